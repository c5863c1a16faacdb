package main

import (
	"crypto/sha256"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestDecisionCacheIsBoundedAndExpires(t *testing.T) {
	now := time.Unix(1000, 0)
	c := decisionCache{max: 4}
	key := func(i int) [sha256.Size]byte { return sha256.Sum256([]byte("token-" + strconv.Itoa(i))) }
	allowed := metricsDecision{status: http.StatusOK, expires: now.Add(metricsAuthTTL)}

	c.put(key(0), allowed)
	d, ok := c.get(key(0), now)
	assert.True(t, ok)
	assert.Equal(t, http.StatusOK, d.status)
	_, ok = c.get(key(0), now.Add(metricsAuthTTL))
	assert.False(t, ok, "a decision is reused for metricsAuthTTL only")

	for i := range 1000 {
		c.put(key(i), allowed)
		assert.LessOrEqual(t, len(c.m), c.max, "tokens chosen by callers never grow the cache past its bound")
	}
	_, ok = c.get(key(999), now)
	assert.True(t, ok, "the newest decision is kept")
}
