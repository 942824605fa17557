package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

var errLocked = errors.New("directory in use")

// lockDir takes an exclusive flock on <dir>/cluster.lock. The kernel drops it when the process
// dies, however it dies, so a stale lock can never block a restart.
func lockDir(dir string) (func(), error) {
	path := filepath.Join(dir, "cluster.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		pid, _ := os.ReadFile(filepath.Join(dir, "cluster.pid"))
		return nil, fmt.Errorf("%w: another gitops-test-cluster (pid %s) is serving %s", errLocked, strings.TrimSpace(string(pid)), dir)
	}
	return func() { f.Close() }, nil
}

// writeFileAtomic replaces path in one rename, so a reader (a test polling for the kubeconfig,
// the start script polling for "ready") never sees half a file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

type portSet struct {
	APIServer  int `json:"apiserver"`
	EtcdClient int `json:"etcdClient"`
	EtcdPeer   int `json:"etcdPeer"`
}

// choosePorts prefers the ports of the previous run so that a kubeconfig a test already read
// keeps working across a restart; any port that is now taken is replaced by a free one. The
// apiserver's listener is returned open so nobody can take its port before the server starts.
func choosePorts(dir string, fixedAPIPort int) (portSet, net.Listener, error) {
	path := filepath.Join(dir, "ports.json")
	var previous portSet
	if data, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(data, &previous)
	}

	var apiListener net.Listener
	var err error
	if fixedAPIPort != 0 {
		apiListener, err = listenLocal(fixedAPIPort)
		if err != nil {
			return portSet{}, nil, fmt.Errorf("%w: apiserver port 127.0.0.1:%d: %v", errPortInUse, fixedAPIPort, err)
		}
	} else {
		apiListener = reuseOrAny(previous.APIServer)
		if apiListener == nil {
			return portSet{}, nil, errors.New("no free port on 127.0.0.1")
		}
	}

	// etcd binds its own sockets, so these are only probed: the window between closing the
	// probe and etcd's bind is a few milliseconds, and a lost race fails loudly at start.
	etcdClient := reuseOrAny(previous.EtcdClient)
	etcdPeer := reuseOrAny(previous.EtcdPeer)
	if etcdClient == nil || etcdPeer == nil {
		apiListener.Close()
		return portSet{}, nil, errors.New("no free port on 127.0.0.1")
	}
	ports := portSet{
		APIServer:  apiListener.Addr().(*net.TCPAddr).Port,
		EtcdClient: etcdClient.Addr().(*net.TCPAddr).Port,
		EtcdPeer:   etcdPeer.Addr().(*net.TCPAddr).Port,
	}
	etcdClient.Close()
	etcdPeer.Close()

	data, _ := json.MarshalIndent(ports, "", "  ")
	if err := writeFileAtomic(path, append(data, '\n'), 0o600); err != nil {
		apiListener.Close()
		return portSet{}, nil, err
	}
	return ports, apiListener, nil
}

func reuseOrAny(previous int) net.Listener {
	if previous > 0 {
		if l, err := listenLocal(previous); err == nil {
			return l
		}
	}
	l, err := listenLocal(0)
	if err != nil {
		return nil
	}
	return l
}

func listenLocal(port int) (net.Listener, error) {
	return net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
}
