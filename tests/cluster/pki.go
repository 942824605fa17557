package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/csv"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

const (
	adminUser      = "admin"
	restrictedUser = "restricted"
)

// kubernetesServiceIP is the first address of serviceCIDR. A certificate made for an older
// range (10.0.0.0/24 before the /16) is replaced on start.
var kubernetesServiceIP = net.IPv4(10, 96, 0, 1)

// credentials are the files the apiserver is started with and what clients need to reach it.
type credentials struct {
	pkiDir          string
	caFile          string
	caPEM           []byte
	servingCertFile string
	servingKeyFile  string
	saKeyFile       string
	saPubFile       string
	tokenFile       string
	adminToken      string
	restrictedToken string
}

// ensureCredentials creates what is missing and reuses what exists, so a restart on the same
// directory keeps working kubeconfigs and service-account tokens. A serving certificate that
// is close to expiry or not signed by the current CA is replaced.
func ensureCredentials(dir string) (*credentials, error) {
	c := &credentials{pkiDir: filepath.Join(dir, "pki")}
	if err := os.MkdirAll(c.pkiDir, 0o700); err != nil {
		return nil, err
	}
	c.caFile = filepath.Join(c.pkiDir, "ca.crt")
	caKeyFile := filepath.Join(c.pkiDir, "ca.key")
	c.servingCertFile = filepath.Join(c.pkiDir, "apiserver.crt")
	c.servingKeyFile = filepath.Join(c.pkiDir, "apiserver.key")
	c.saKeyFile = filepath.Join(c.pkiDir, "service-account.key")
	c.saPubFile = filepath.Join(c.pkiDir, "service-account.pub")
	c.tokenFile = filepath.Join(dir, "tokens.csv")

	caCert, caKey, err := loadPair(c.caFile, caKeyFile)
	if err != nil || !validFor(caCert, 30*24*time.Hour) {
		caCert, caKey, err = newCA(c.caFile, caKeyFile)
		if err != nil {
			return nil, fmt.Errorf("create CA: %w", err)
		}
	}
	c.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caCert.Raw})

	serving, _, err := loadPair(c.servingCertFile, c.servingKeyFile)
	if err != nil || !validFor(serving, 7*24*time.Hour) || serving.CheckSignatureFrom(caCert) != nil ||
		!slices.ContainsFunc(serving.IPAddresses, kubernetesServiceIP.Equal) {
		if err := newServingCert(c.servingCertFile, c.servingKeyFile, caCert, caKey); err != nil {
			return nil, fmt.Errorf("create serving certificate: %w", err)
		}
	}

	if _, err := os.Stat(c.saKeyFile); err != nil {
		if err := newServiceAccountKey(c.saKeyFile, c.saPubFile); err != nil {
			return nil, fmt.Errorf("create service-account key: %w", err)
		}
	} else if _, err := os.Stat(c.saPubFile); err != nil {
		if err := writePublicKey(c.saKeyFile, c.saPubFile); err != nil {
			return nil, err
		}
	}

	if err := c.ensureTokens(); err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	return c, nil
}

func loadPair(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("key does not match certificate")
	}
	return cert, key, nil
}

func validFor(cert *x509.Certificate, margin time.Duration) bool {
	return time.Now().Add(margin).Before(cert.NotAfter)
}

func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func serial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func newCA(certFile, keyFile string) (*x509.Certificate, crypto.Signer, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: "gitops-test-cluster CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(certFile, keyFile, der, key); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func newServingCert(certFile, keyFile string, ca *x509.Certificate, caKey crypto.Signer) error {
	key, err := newKey()
	if err != nil {
		return err
	}
	sn, err := serial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{
			"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local",
		},
		// The "kubernetes" Service's address: the first of --service-cluster-ip-range.
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, kubernetesServiceIP},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	return writePair(certFile, keyFile, der, key)
}

func writePair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	// Key first: a crash in between leaves a key without certificate, which loadPair rejects.
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func newServiceAccountKey(keyFile, pubFile string) error {
	key, err := newKey()
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writePublicKey(keyFile, pubFile)
}

func writePublicKey(keyFile, pubFile string) error {
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return fmt.Errorf("%s: not PEM", keyFile)
	}
	key, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil {
		return fmt.Errorf("%s: %w", keyFile, err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	return writeFileAtomic(pubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644)
}

// ensureTokens reads tokens.csv (format of --token-auth-file: token,user,uid[,"group,..."])
// and writes it afresh when a user is missing.
func (c *credentials) ensureTokens() error {
	if data, err := os.ReadFile(c.tokenFile); err == nil {
		records, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
		if err == nil {
			for _, r := range records {
				if len(r) < 3 {
					continue
				}
				switch r[1] {
				case adminUser:
					c.adminToken = r[0]
				case restrictedUser:
					c.restrictedToken = r[0]
				}
			}
		}
	}
	if c.adminToken != "" && c.restrictedToken != "" {
		return nil
	}
	var err error
	if c.adminToken, err = newToken(); err != nil {
		return err
	}
	if c.restrictedToken, err = newToken(); err != nil {
		return err
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write([]string{c.adminToken, adminUser, "gitops-test-admin", "system:masters"})
	_ = w.Write([]string{c.restrictedToken, restrictedUser, "gitops-test-restricted"})
	w.Flush()
	return writeFileAtomic(c.tokenFile, buf.Bytes(), 0o600)
}

func newToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
