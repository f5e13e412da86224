package weft_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	weftv1 "github.com/weft/weft/workers/go/gen/weft/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The tests run against a real redis-server and a real weftd (from this repository's source),
// started here on free loopback ports.
var (
	redisURL string
	daemon   *weftd
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	redis, url, err := startRedis()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting redis-server:", err)
		return 1
	}
	defer func() { _ = redis.Process.Kill(); _ = redis.Wait() }()
	redisURL = url
	daemon, err = startWeftd(0, fmt.Sprintf("gotest-%d", time.Now().UnixNano()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting weftd:", err)
		return 1
	}
	defer daemon.stop()
	return m.Run()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitUntil(timeout time.Duration, check func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if check() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func startRedis() (*exec.Cmd, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("%w (is the Debian package redis-server installed?)", err)
	}
	ok := waitUntil(10*time.Second, func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if !ok {
		_ = cmd.Process.Kill()
		return nil, "", fmt.Errorf("redis-server did not listen on port %d", port)
	}
	return cmd, fmt.Sprintf("redis://127.0.0.1:%d", port), nil
}

// weftd is a daemon child process, listening.
type weftd struct {
	cmd    *exec.Cmd
	port   int
	prefix string
	mu     sync.Mutex
	output strings.Builder
}

func (d *weftd) address() string { return fmt.Sprintf("127.0.0.1:%d", d.port) }

func (d *weftd) stop() {
	_ = d.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-done
	}
}

func (d *weftd) kill() {
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
}

// startWeftd runs `node --import tsx/esm daemon/src/main.ts` like test/support/weftd.ts does.
func startWeftd(port int, prefix string) (*weftd, error) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		return nil, err
	}
	loader := "file://" + filepath.Join(root, "node_modules/tsx/dist/esm/index.mjs")
	cmd := exec.Command("node", "--import", loader, filepath.Join(root, "daemon/src/main.ts"),
		"--redis-url", redisURL, "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--metrics-addr", "127.0.0.1:0", "--insecure",
		"--prefix", prefix, "--stalled-interval", "300ms")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WEFT_") && !strings.HasPrefix(kv, "REDIS_URL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &weftd{cmd: cmd, prefix: prefix}
	listening := make(chan int, 1)
	go func() {
		scanner := bufio.NewScanner(stdout)
		scanner.Buffer(make([]byte, 1<<20), 1<<20)
		for scanner.Scan() {
			line := scanner.Text()
			d.mu.Lock()
			d.output.WriteString(line + "\n")
			d.mu.Unlock()
			var l struct {
				Msg  string `json:"msg"`
				Port int    `json:"port"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "weftd listening" {
				listening <- l.Port
			}
		}
		close(listening)
	}()
	select {
	case p, ok := <-listening:
		if !ok {
			return nil, fmt.Errorf("weftd exited at start:\n%s", d.output.String())
		}
		d.port = p
		return d, nil
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("weftd did not listen within 60s:\n%s", d.output.String())
	}
}

// client is the WorkflowService of a daemon.
func client(t *testing.T, address string) weftv1.WorkflowServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return weftv1.NewWorkflowServiceClient(conn)
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
