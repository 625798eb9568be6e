// SPDX-License-Identifier: MPL-2.0

package vaultsim

// The vaultsim command as scripts use it: -config, -ready-file, a request
// over the unix socket, graceful SIGTERM (plugin shut down and reaped).

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childPids lists the processes whose parent is pid.
func childPids(pid int) []int {
	var out []int
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 {
			if pp, _ := strconv.Atoi(f[1]); pp == pid {
				c, _ := strconv.Atoi(strings.Fields(s)[0])
				out = append(out, c)
			}
		}
	}
	return out
}

func TestCommandConfigReadySigterm(t *testing.T) {
	plugin := pluginPath(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go on PATH to build the command")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "vaultsim")
	if out, err := exec.Command(goBin, "build", "-o", bin, "byok/vaultsim/cmd/vaultsim").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "v.sock")
	cfg := fmt.Sprintf(`{"plugin": %q, "listen": "unix:%s", "root_token": "root-cmd",
	  "storage": "st.json", "log": "plugin.log", "ready_file": "ready",
	  "policies": {"reader": "path \"byok/config\" { capabilities = [\"read\"] }"},
	  "tokens": [{"id": "tok-reader", "policies": ["reader"]}]}`, plugin, sock)
	if err := os.WriteFile(filepath.Join(dir, "cfg.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", filepath.Join(dir, "cfg.json"))
	var stderr LogBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()
	ready := filepath.Join(dir, "ready")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil && strings.TrimSpace(string(b)) == "unix:"+sock {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ready file; stderr: %s", stderr.String())
		}
		select {
		case err := <-done:
			t.Fatalf("vaultsim exited: %v; stderr: %s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}, Timeout: 30 * time.Second}
	get := func(tok, path string) int {
		req, _ := http.NewRequest("GET", "http://vaultsim/v1/"+path, nil)
		req.Header.Set("X-Vault-Token", tok)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := get("tok-reader", "byok/config"); c != 200 {
		t.Errorf("configured token reading config: %d", c)
	}
	if c := get("tok-reader", "sys/policies/acl/reader"); c != 403 {
		t.Errorf("configured token reading a policy: %d, want 403", c)
	}
	if c := get("root-cmd", "sys/policies/acl/reader"); c != 200 {
		t.Errorf("root reading a policy: %d", c)
	}
	req, _ := http.NewRequest("PUT", "http://vaultsim/v1/byok/config", strings.NewReader(`{"max_key_versions": 4}`))
	req.Header.Set("X-Vault-Token", "root-cmd")
	if resp, err := client.Do(req); err != nil || resp.StatusCode >= 300 {
		t.Errorf("config write as root: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	kids := childPids(cmd.Process.Pid)
	if len(kids) == 0 {
		t.Fatalf("no plugin process under vaultsim")
	}
	client.CloseIdleConnections()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("vaultsim exit after SIGTERM: %v; stderr: %s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("vaultsim did not exit after SIGTERM")
	}
	for _, k := range kids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", k)); err == nil {
			t.Errorf("plugin process %d still exists after vaultsim exited", k)
		}
	}
	for _, f := range []string{sock, ready} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left behind", f)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "plugin.log")); err != nil || len(b) == 0 {
		t.Errorf("-log file empty: %v", err)
	} else {
		checkPluginLog(t, string(b))
	}
	if _, err := os.Stat(filepath.Join(dir, "st.json")); err != nil {
		t.Errorf("storage file (relative to the config) not written: %v", err)
	}
}
