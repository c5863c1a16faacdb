//go:build !linux

package pdeathsig

// Elsewhere than on Linux there is no parent-death signal: Wrap returns the target itself.
const supported = false
