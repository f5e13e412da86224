package weft

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// Dial makes a client connection to weftd for NewWorker. address is "host:port" (plain-text
// HTTP/2), "http://host:port", or "https://host:port" (TLS with the system roots). Keepalive
// pings notice a dead connection (a cut link) while a poll waits; opts come last and win.
func Dial(address string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	target, secure := address, false
	if rest, ok := strings.CutPrefix(address, "https://"); ok {
		target, secure = rest, true
	} else if rest, ok := strings.CutPrefix(address, "http://"); ok {
		target = rest
	}
	target = strings.TrimSuffix(target, "/")
	creds := insecure.NewCredentials()
	if secure {
		creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	}
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	return grpc.NewClient("passthrough:///"+target, append(base, opts...)...)
}

// WithTLSFiles returns a dial option for TLS with PEM files: caFile is the CA that signed
// weftd's certificate (empty: the system roots); certFile and keyFile, when both set, are the
// client certificate and key that weftd's --tls-client-ca requires (mTLS).
func WithTLSFiles(caFile, certFile, keyFile string) (grpc.DialOption, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no PEM certificate in %s", caFile)
		}
		config.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(config)), nil
}
