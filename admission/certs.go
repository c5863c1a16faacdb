package admission

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"sort"
	"time"
)

// Keys of the certificate Secret. tls.crt, tls.key and ca.crt are what the webhook server and
// the install bundle know; ca.key lets any replica sign the next serving certificate.
const (
	KeyTLSCert = "tls.crt"
	KeyTLSKey  = "tls.key"
	KeyCACert  = "ca.crt"
	KeyCAKey   = "ca.key"
)

// clockSkew backdates NotBefore so that an API server whose clock runs a little behind ours
// still accepts a certificate issued a moment ago.
const clockSkew = time.Minute

// certPolicy says what the certificate material must look like.
type certPolicy struct {
	// DNSNames and IPs are the exact subject alternative names of the serving certificate.
	DNSNames []string
	IPs      []net.IP
	// CALifetime and CertLifetime are the validity periods of newly issued certificates; each is
	// renewed once two thirds of its own validity period have passed.
	CALifetime, CertLifetime time.Duration
	// Overlap is how long a new CA is published in caBundle, next to the old one, before a
	// serving certificate signed by it replaces one signed by the old CA.
	Overlap time.Duration
}

// certMaterial is the parsed content of the certificate Secret.
type certMaterial struct {
	// CAs is the CA bundle, newest first; CAs[0] is the signing CA when caKey matches it.
	CAs   []*x509.Certificate
	caKey crypto.Signer
	cert  *x509.Certificate
	key   crypto.Signer
}

// renewAt is the instant two thirds into cert's validity period, counted from its issue rather
// than its backdated NotBefore, when it is replaced.
func renewAt(cert *x509.Certificate) time.Time {
	life := cert.NotAfter.Sub(issuedAt(cert))
	return issuedAt(cert).Add(life * 2 / 3)
}

// issuedAt is when cert was really issued: NotBefore is backdated by clockSkew.
func issuedAt(cert *x509.Certificate) time.Time { return cert.NotBefore.Add(clockSkew) }

// parseMaterial reads what it can of data and ignores the rest: an empty or damaged Secret is
// something to fill in, not an error.
func parseMaterial(data map[string][]byte) certMaterial {
	var m certMaterial
	for _, c := range parseCerts(data[KeyCACert]) {
		if c.IsCA {
			m.CAs = append(m.CAs, c)
		}
	}
	m.caKey, _ = parseKey(data[KeyCAKey])
	if certs := parseCerts(data[KeyTLSCert]); len(certs) > 0 {
		m.cert = certs[0]
	}
	m.key, _ = parseKey(data[KeyTLSKey])
	return m
}

func parseCerts(data []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New("key cannot sign")
	}
	return signer, nil
}

// keyMatches reports whether key is the private key of cert.
func keyMatches(cert *x509.Certificate, key crypto.Signer) bool {
	if cert == nil || key == nil {
		return false
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// reconcileCerts returns the Secret data the certificate material should have at now, and why it
// differs from data (empty when data is already right). It is a pure function so that every
// rotation rule is unit-tested without waiting for clocks:
//
//   - the signing CA is issued when missing or unusable, and renewed at two thirds of its life;
//     a renewed CA is added in front of the old one, which stays in the bundle until it expires,
//     so the API server trusts serving certificates of both while replicas switch over;
//   - the serving certificate is issued when missing, damaged, expired, for other names, or not
//     signed by a CA in the bundle, and renewed at two thirds of its life;
//   - a serving certificate that is still good but signed by an older CA is replaced only after
//     the new CA has been in the bundle for the overlap, so every API server trusts the new CA
//     before anyone serves a certificate signed by it.
func reconcileCerts(data map[string][]byte, pol certPolicy, now time.Time) (map[string][]byte, []string, error) {
	m := parseMaterial(data)
	var why []string

	// The bundle keeps every CA that is still valid, newest first. A CA that is not valid yet
	// (beyond the clock skew another replica may have) is dropped: sorted first as the newest,
	// it would be the signer, fail to match any key and have a new CA issued behind it on every
	// sync, a write loop that tampering with the Secret could start.
	expired := 0
	cas := slices.DeleteFunc(slices.Clone(m.CAs), func(c *x509.Certificate) bool {
		if !now.Before(c.NotAfter) {
			expired++
			return true
		}
		return now.Add(clockSkew).Before(c.NotBefore)
	})
	notYetValid := len(m.CAs) - len(cas) - expired
	sort.SliceStable(cas, func(i, j int) bool { return cas[i].NotBefore.After(cas[j].NotBefore) })
	caKey := m.caKey
	switch {
	case len(cas) == 0 || !keyMatches(cas[0], caKey):
		ca, key, err := newCA(pol.CALifetime, now)
		if err != nil {
			return nil, nil, err
		}
		cas, caKey = append([]*x509.Certificate{ca}, cas...), key
		why = append(why, "issued a CA")
	case !now.Before(renewAt(cas[0])):
		ca, key, err := newCA(pol.CALifetime, now)
		if err != nil {
			return nil, nil, err
		}
		cas, caKey = append([]*x509.Certificate{ca}, cas...), key
		why = append(why, "renewed the CA")
	}
	if expired > 0 && len(why) == 0 {
		why = append(why, "dropped an expired CA")
	}
	if notYetValid > 0 {
		why = append(why, "dropped a CA that is not valid yet")
	}
	signer := cas[0]
	if bounded := boundBundle(cas, m.cert); len(bounded) < len(cas) {
		cas = bounded
		why = append(why, fmt.Sprintf("dropped CAs beyond the %d a bundle keeps", maxBundleCAs))
	}

	cert, key := m.cert, m.key
	usable := servingUsable(cert, key, cas, pol, now)
	switch {
	case !usable:
		why = append(why, "issued a serving certificate")
	case !now.Before(renewAt(cert)) && now.Sub(issuedAt(signer)) >= pol.Overlap:
		why = append(why, "renewed the serving certificate")
		usable = false
	case !signedBy(cert, signer) && now.Sub(issuedAt(signer)) >= pol.Overlap:
		why = append(why, "moved the serving certificate to the new CA")
		usable = false
	}
	if !usable {
		var err error
		if cert, key, err = newServingCert(signer, caKey, pol, now); err != nil {
			return nil, nil, err
		}
	}

	out := map[string][]byte{
		KeyCACert:  encodeCerts(cas...),
		KeyCAKey:   encodeKey(caKey),
		KeyTLSCert: encodeCerts(cert),
		KeyTLSKey:  encodeKey(key),
	}
	if len(why) == 0 {
		// Nothing was reissued: keep the stored bytes, so that a re-encoding never causes a write.
		for k := range out {
			if len(data[k]) > 0 {
				out[k] = data[k]
			}
		}
		if !bytes.Equal(out[KeyCACert], data[KeyCACert]) {
			why = append(why, "rewrote the CA bundle")
		}
	}
	return out, why, nil
}

// maxBundleCAs is the most CAs the bundle keeps. A scheduled rotation needs two (the new CA and
// the one the serving certificate is still signed by during the overlap); the third is slack.
// Without a bound, every removal of ca.key would add a CA for the lifetime of the old ones.
const maxBundleCAs = 3

// boundBundle keeps at most maxBundleCAs of cas (newest first, cas[0] the signer): the signer,
// then the CA that signed cert, which is still being served, then the newest of the others.
func boundBundle(cas []*x509.Certificate, cert *x509.Certificate) []*x509.Certificate {
	if len(cas) <= maxBundleCAs {
		return cas
	}
	out := []*x509.Certificate{cas[0]}
	issuer := -1
	if cert != nil {
		for i, ca := range cas[1:] {
			if signedBy(cert, ca) {
				issuer = i + 1
				out = append(out, ca)
				break
			}
		}
	}
	for i, ca := range cas[1:] {
		if len(out) == maxBundleCAs {
			break
		}
		if i+1 != issuer {
			out = append(out, ca)
		}
	}
	return out
}

// servingUsable reports whether cert can go on being served: it parses, matches key, is valid
// now, names exactly the wanted hosts and is signed by a CA of the bundle.
func servingUsable(cert *x509.Certificate, key crypto.Signer, cas []*x509.Certificate, pol certPolicy, now time.Time) bool {
	if cert == nil || !keyMatches(cert, key) || now.Before(cert.NotBefore) || !now.Before(cert.NotAfter) {
		return false
	}
	if !sameStrings(cert.DNSNames, pol.DNSNames) || !sameIPs(cert.IPAddresses, pol.IPs) {
		return false
	}
	for _, ca := range cas {
		if signedBy(cert, ca) {
			return true
		}
	}
	return false
}

func signedBy(cert, ca *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, ca.RawSubject) && cert.CheckSignatureFrom(ca) == nil
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func sameIPs(a, b []net.IP) bool {
	str := func(ips []net.IP) []string {
		out := make([]string, len(ips))
		for i, ip := range ips {
			out[i] = ip.String()
		}
		return out
	}
	return sameStrings(str(a), str(b))
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

// newCA issues a self-signed CA. Its subject carries the issue time so that a renewed CA never
// has the subject of the CA it replaces.
func newCA(lifetime time.Duration, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("generating the CA key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject: pkix.Name{
			Organization: []string{"tcr-assistant"},
			CommonName:   "tcr-assistant-webhook-ca@" + now.UTC().Format("20060102T150405.000000000Z"),
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// newServingCert issues the webhook's serving certificate, never outliving its CA.
func newServingCert(ca *x509.Certificate, caKey crypto.Signer, pol certPolicy, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("generating the serving key: %w", err)
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(pol.CertLifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	cn := "tcr-assistant-webhook"
	if len(pol.DNSNames) > 0 {
		cn = pol.DNSNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{Organization: []string{"tcr-assistant"}, CommonName: cn},
		DNSNames:     pol.DNSNames,
		IPAddresses:  pol.IPs,
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the serving certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func encodeCerts(certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}

func encodeKey(key crypto.Signer) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		// Only keys this package generated reach here, and those always marshal.
		panic(fmt.Sprintf("marshalling a generated key: %v", err))
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// splitSANs sorts extra subject alternative names into DNS names and IP addresses.
func splitSANs(sans []string) (dns []string, ips []net.IP) {
	for _, s := range sans {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else if s != "" {
			dns = append(dns, s)
		}
	}
	return dns, ips
}
