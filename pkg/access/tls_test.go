package access

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIssueTLS(t *testing.T) {
	k := Keyring{Dir: t.TempDir()}
	issued, err := k.IssueTLS([]string{"n1", "n2"}, []string{"localhost", "127.0.0.1"}, false)
	if err != nil || len(issued) != 2 {
		t.Fatalf("issued %v, %v", issued, err)
	}
	caPEM, err := os.ReadFile(k.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	for _, n := range []string{"n1", "n2"} {
		f := k.TLS(n)
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		// Valid for what clients and peers dial, as a server and as a
		// route's client.
		for _, host := range []string{n, "localhost", "127.0.0.1"} {
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
					t.Errorf("%s for %s (%v): %v", n, host, usage, err)
				}
			}
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "n9"}); err == nil {
			t.Errorf("%s verifies for a name it was not issued for", n)
		}
		if leaf.IsCA {
			t.Errorf("%s is a CA", n)
		}
		for _, key := range []string{f.Key, filepath.Join(k.Dir, TLSDir, caKeyFile)} {
			if st, err := os.Stat(key); err != nil {
				t.Error(err)
			} else if st.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, want 0600", key, st.Mode().Perm())
			}
		}
	}

	// Again: the CA and existing certificates are kept; renew issues anew
	// under the same CA; a new node gets one.
	before, _ := os.ReadFile(k.TLS("n1").Cert)
	issued, err = k.IssueTLS([]string{"n1", "n3"}, nil, false)
	if err != nil || strings.Join(issued, ",") != "n3" {
		t.Fatalf("second run issued %v (%v), want only n3", issued, err)
	}
	if after, _ := os.ReadFile(k.TLS("n1").Cert); !bytes.Equal(before, after) {
		t.Error("n1's certificate was replaced without --renew")
	}
	if _, err := k.IssueTLS([]string{"n1"}, nil, true); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(k.TLS("n1").Cert); bytes.Equal(before, after) {
		t.Error("renew kept n1's certificate")
	}
	if ca, _ := os.ReadFile(k.CAFile()); !bytes.Equal(ca, caPEM) {
		t.Error("the CA changed")
	}

	for _, bad := range []string{"", "N1", "n1.example", "../n1"} {
		if _, err := k.IssueTLS([]string{bad}, nil, false); err == nil {
			t.Errorf("node name %q accepted", bad)
		}
	}
	if _, err := ClientTLS(filepath.Join(k.Dir, "nope.pem")); err == nil {
		t.Error("ClientTLS accepted a missing file")
	}
	if _, err := ClientTLS(k.TLS("n1").Key); err == nil {
		t.Error("ClientTLS accepted a key for a certificate")
	}
}
