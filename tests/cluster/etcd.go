package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

type etcdServer struct {
	e *embed.Etcd
}

// failed reports an error etcd hits after start-up (for example its listener dying).
func (s *etcdServer) failed() <-chan error { return s.e.Err() }

func (s *etcdServer) stop() {
	logf("stopping etcd")
	s.e.Close()
	logf("etcd stopped")
}

func startEtcd(ctx context.Context, dir string, ports portSet, fsync bool) (*etcdServer, error) {
	cfg := embed.NewConfig()
	cfg.Name = "gitops-test"
	cfg.Dir = filepath.Join(dir, "etcd")
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports.EtcdClient)}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports.EtcdPeer)}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	// Ignored by etcd when the data directory already holds a member, which is what lets a
	// restart keep its data even if the peer port changed.
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "warn"
	cfg.LogOutputs = []string{"stderr"}
	cfg.UnsafeNoFsync = !fsync
	// A lone member elects itself after the election timeout; etcd's 1 s default is most of
	// its start-up time. With no peers there is nobody to lose leadership to, so short is safe.
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	// embed.NewConfig leaves this at zero (only etcd's flag parsing sets the default), which
	// would log every request as "expensive".
	cfg.WarningUnaryRequestDuration = time.Second

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		if strings.Contains(err.Error(), "address already in use") {
			return nil, fmt.Errorf("%w: etcd (client 127.0.0.1:%d, peer 127.0.0.1:%d): %v", errPortInUse, ports.EtcdClient, ports.EtcdPeer, err)
		}
		return nil, fmt.Errorf("start etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return &etcdServer{e: e}, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: %w", err)
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		e.Close()
		return nil, errors.New("etcd did not become ready within 60s")
	case <-ctx.Done():
		e.Close()
		return nil, context.Cause(ctx)
	}
}
