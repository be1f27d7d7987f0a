package access

import (
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
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
)

// The cluster's TLS material, under <keyring>/tls: one private certificate
// authority for the deployment and one certificate per NATS node. The
// nodes present their certificate to clients (who verify it against the
// CA: --nats-ca) and to each other on routes, where each side also
// demands the other's (verify: true in deploy/nats/cluster.conf). Routes
// are thus authenticated by certificates only this CA issues, which is
// why it issues node certificates and nothing else: a client certificate
// from it would open the route port.
//
// The certificates are made with the standard library's crypto/x509 and
// ECDSA P-256, nothing hand-rolled. Lifetimes: the CA 10 years, a node 2
// years; renew a node's with `dunctl credentials tls --renew NODE...` and
// reload the node (nats-server --signal reload).
const (
	TLSDir       = "tls"
	caCertFile   = "ca.pem"
	caKeyFile    = "ca-key.pem"
	caLifetime   = 10 * 365 * 24 * time.Hour
	nodeLifetime = 2 * 365 * 24 * time.Hour
)

// TLSFiles are the paths of one node's TLS material.
type TLSFiles struct{ CA, Cert, Key string }

// TLS returns the paths of node's files in the keyring.
func (k Keyring) TLS(node string) TLSFiles {
	d := filepath.Join(k.Dir, TLSDir)
	return TLSFiles{CA: filepath.Join(d, caCertFile), Cert: filepath.Join(d, node+".pem"), Key: filepath.Join(d, node+"-key.pem")}
}

// CAFile is the certificate clients verify the nodes against.
func (k Keyring) CAFile() string { return k.TLS("").CA }

// IssueTLS makes the CA if the keyring has none, and a certificate for each
// node that has none (or every one named, with renew). A node's
// certificate names the node and every extra host (the names and
// addresses clients and peers dial: "localhost", "127.0.0.1", a load
// balancer's name). It returns the nodes it issued for.
func (k Keyring) IssueTLS(nodes, hosts []string, renew bool) ([]string, error) {
	if len(nodes) == 0 {
		return nil, errors.New("tls: name at least one node")
	}
	for _, n := range nodes {
		if err := checkNodeName(n); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(k.Dir, TLSDir), 0o700); err != nil {
		return nil, err
	}
	ca, caKey, err := k.loadOrCreateCA()
	if err != nil {
		return nil, err
	}
	var issued []string
	for _, n := range nodes {
		f := k.TLS(n)
		if _, err := os.Stat(f.Cert); err == nil && !renew {
			continue
		}
		if err := issueNode(f, n, hosts, ca, caKey); err != nil {
			return issued, fmt.Errorf("tls: node %s: %w", n, err)
		}
		issued = append(issued, n)
	}
	return issued, nil
}

func checkNodeName(n string) error {
	if n == "" || len(n) > 63 {
		return fmt.Errorf("tls: node name %q: 1 to 63 characters", n)
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("tls: node name %q: lower-case letters, digits and '-' only (it is a host name)", n)
		}
	}
	return nil
}

func (k Keyring) loadOrCreateCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	f := k.TLS("")
	certPEM, certErr := os.ReadFile(f.CA)
	keyPEM, keyErr := os.ReadFile(filepath.Join(k.Dir, TLSDir, caKeyFile))
	switch {
	case certErr == nil && keyErr == nil:
		cert, err := parseCert(certPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("tls: %s: %w", f.CA, err)
		}
		key, err := parseKey(keyPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("tls: %s: %w", caKeyFile, err)
		}
		return cert, key, nil
	case certErr == nil || keyErr == nil:
		return nil, nil, fmt.Errorf("tls: %s and %s must both exist or both be absent", f.CA, caKeyFile)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"dunning"}, CommonName: "dunning NATS cluster CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(filepath.Join(k.Dir, TLSDir, caKeyFile), key); err != nil {
		return nil, nil, err
	}
	if err := WriteFileAtomic(f.CA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func issueNode(f TLSFiles, node string, hosts []string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"dunning"}, CommonName: node},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(nodeLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Server for clients and incoming routes, client for the routes
		// it dials (the peer verifies it).
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    []string{node},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != node {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	if err := writeKey(f.Key, key); err != nil {
		return err
	}
	return WriteFileAtomic(f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func parseKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("not an ECDSA key")
	}
	return ek, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n
}

// ClientTLS is the option a client needs to reach a node that serves TLS:
// verify it against caFile. The file is checked now, so that a wrong path
// fails at start with its name rather than as a handshake error later.
func ClientTLS(caFile string) (nats.Option, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	if _, err := parseCert(b); err != nil {
		return nil, fmt.Errorf("%s: %w", caFile, err)
	}
	return nats.RootCAs(caFile), nil
}
