package station

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/internal/testkit"
)

// dmsCommand is "station dms" running in this process.
type dmsCommand struct {
	url    string
	lines  []string // stdout up to the listening line
	stderr *testkit.Buffer
	stop   func() error
}

// startDMSCommand runs "station dms args..." in process and waits for
// the line that says where it listens.
func startDMSCommand(t *testing.T, args ...string) *dmsCommand {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	c := &dmsCommand{stderr: &testkit.Buffer{}}
	m := &Main{Stdout: pw, Stderr: c.stderr, Getenv: func(string) string { return "" }}
	done := make(chan error, 1)
	go func() {
		err := m.Run(ctx, append([]string{"dms"}, args...))
		pw.CloseWithError(io.EOF)
		done <- err
	}()
	var once sync.Once
	var result error
	c.stop = func() error {
		once.Do(func() { cancel(); result = <-done })
		return result
	}
	t.Cleanup(func() { c.stop() })
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		c.lines = append(c.lines, line)
		if u, ok := strings.CutPrefix(line, "dms listening on "); ok {
			c.url = u
			break
		}
		var j struct{ Listening string }
		if json.Unmarshal([]byte(line), &j) == nil && j.Listening != "" {
			c.url = j.Listening
			break
		}
	}
	if c.url == "" {
		err := c.stop()
		t.Fatalf("station dms %s printed no address: %v\nstdout: %q\nstderr: %s", strings.Join(args, " "), err, c.lines, c.stderr)
	}
	go io.Copy(io.Discard, pr)
	return c
}

// get calls the DMS with key and decodes the answer into out.
func (c *dmsCommand) call(t *testing.T, method, path, key string, body any, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, path, data, err)
		}
	}
	return resp.StatusCode
}

func TestDMSCommandServesWithFirstAdminKey(t *testing.T) {
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "dms.db")
	keyFile := filepath.Join(dir, "admin.key")
	c := startDMSCommand(t, "--db", db, "--listen", "127.0.0.1:0", "--admin-key-file", keyFile)

	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("admin key file mode = %v, want 0600", st.Mode().Perm())
	}
	b, _ := os.ReadFile(keyFile)
	admin := strings.TrimSpace(string(b))
	if !strings.HasPrefix(admin, dms.KeyPrefix) {
		t.Fatalf("admin key file holds %q, want a %s… key", admin, dms.KeyPrefix)
	}
	if !strings.Contains(strings.Join(c.lines, "\n"), keyFile) {
		t.Errorf("stdout %q does not say where the admin key went", c.lines)
	}

	// The key works over HTTP: make a product, a token, and claim a
	// device with "station dms claim".
	var keys []dms.Key
	if code := c.call(t, "GET", "/v1/keys", admin, nil, &keys); code != 200 || len(keys) != 1 || keys[0].Role != dms.RoleAdmin {
		t.Fatalf("GET /v1/keys with the admin key = %d %+v", code, keys)
	}
	if code := c.call(t, "GET", "/v1/keys", "", nil, nil); code != 401 {
		t.Errorf("GET /v1/keys without a key = %d, want 401", code)
	}
	product := map[string]any{"code": "THERMO", "name": "Thermostat", "part_number": "TH-1", "stage": "production"}
	if code := c.call(t, "POST", "/v1/products", admin, product, nil); code != 201 {
		t.Fatalf("POST /v1/products = %d", code)
	}
	var tok struct {
		Secret string `json:"secret"`
	}
	if code := c.call(t, "POST", "/v1/products/THERMO/tokens", admin, map[string]any{"max_claims": 1}, &tok); code != 201 {
		t.Fatalf("POST token = %d", code)
	}

	claim := func(getenv func(string) string, args ...string) (string, error) {
		var out, errb bytes.Buffer
		m := &Main{Stdout: &out, Stderr: &errb, Getenv: getenv, Stdin: strings.NewReader(tok.Secret + "\n")}
		err := m.Run(context.Background(), append([]string{"dms", "claim", "--url", c.url}, args...))
		return out.String() + errb.String(), err
	}
	noEnv := func(string) string { return "" }
	out, err := claim(noEnv, "--hardware-id", "24:6f:28:00:00:01", "THERMO", tok.Secret)
	if err != nil || !strings.Contains(out, "serial THERMO-000001") || !strings.Contains(out, "claims left on the token: 0") {
		t.Fatalf("station dms claim = %v, %q", err, out)
	}
	// Again, with the token on stdin ("-"), out of the process list: no
	// claim used.
	if out, err := claim(noEnv, "--hardware-id", "24:6f:28:00:00:01", "THERMO", "-"); err != nil || !strings.Contains(out, "serial THERMO-000001") {
		t.Fatalf("station dms claim with the token on stdin = %v, %q", err, out)
	}
	// Again, with the token from the environment: no claim used.
	env := func(k string) string {
		if k == "STATION_TOKEN" {
			return tok.Secret
		}
		return ""
	}
	out, err = claim(env, "--hardware-id", "24:6f:28:00:00:01", "--json", "THERMO")
	var act struct {
		Serial string
		Repeat bool
	}
	if err != nil || json.Unmarshal([]byte(out), &act) != nil || !act.Repeat || act.Serial != "THERMO-000001" {
		t.Fatalf("station dms claim again = %v, %q", err, out)
	}
	out, err = claim(noEnv, "--hardware-id", "24:6f:28:00:00:02", "THERMO", tok.Secret)
	if Code(err) != ExitFailed || !strings.Contains(err.Error(), dmsapi.CodeTokenSpent) || !strings.Contains(err.Error(), "ask your administrator") {
		t.Errorf("station dms claim with a spent token = %v (code %d), %q; want exit 1 and token_spent", err, Code(err), out)
	}
	if strings.Contains(err.Error(), tok.Secret) {
		t.Errorf("claim error holds the token")
	}
	if _, err := claim(noEnv, "THERMO", tok.Secret); Code(err) != ExitUsage {
		t.Errorf("claim without --hardware-id = %v, want a usage error", err)
	}

	if err := c.stop(); err != nil {
		t.Fatalf("station dms stopped with %v", err)
	}
	logs := c.stderr.String()
	if !strings.Contains(logs, "path=/v1/keys") {
		t.Errorf("the log has no request lines:\n%s", logs)
	}
	for what, secret := range map[string]string{"admin key": admin, "token": tok.Secret} {
		if strings.Contains(logs, secret) || strings.Contains(strings.Join(c.lines, "\n"), secret) {
			t.Errorf("the %s's secret is in the command's output", what)
		}
	}

	// Started again: the key exists, the file is left alone, --json
	// says where it listens.
	c = startDMSCommand(t, "--db", db, "--listen", "127.0.0.1:0", "--admin-key-file", keyFile, "--json")
	if b2, _ := os.ReadFile(keyFile); !bytes.Equal(b, b2) {
		t.Errorf("a restart rewrote the admin key file")
	}
	if code := c.call(t, "GET", "/v1/products/THERMO", admin, nil, nil); code != 200 {
		t.Errorf("after restart, GET product = %d", code)
	}
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
}

func TestDMSCommandRefuses(t *testing.T) {
	dir := t.TempDir()
	existing := writeRaw(t, dir, "taken.key", "something else\n")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"no db", []string{"--listen", "127.0.0.1:0"}, ExitUsage, "--db is required"},
		{"bad db", []string{"--db", "mysql://x", "--listen", "127.0.0.1:0"}, ExitUsage, "sqlite:FILE or a postgres://"},
		{"key file exists", []string{"--db", "sqlite:" + filepath.Join(dir, "a.db"), "--listen", "127.0.0.1:0", "--admin-key-file", existing}, ExitProblem, "exists already"},
		{"no token key file", []string{"--db", "sqlite:" + filepath.Join(dir, "b.db"), "--token-key-file", filepath.Join(dir, "none")}, ExitProblem, "does not exist"},
		{"bad address", []string{"--db", "sqlite:" + filepath.Join(dir, "c.db"), "--listen", "127.0.0.1:99999"}, ExitProblem, "listen on 127.0.0.1:99999"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, err := runMain(t, append([]string{"dms"}, tc.args...)...)
			if Code(err) != tc.wantCode || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("station dms %v = %v (code %d), want code %d and %q\n%s", tc.args, err, Code(err), tc.wantCode, tc.want, stderr)
			}
		})
	}
	if b, _ := os.ReadFile(existing); string(b) != "something else\n" {
		t.Errorf("an existing admin key file was overwritten")
	}
	_, stderr, err := runMain(t, "dms", "--help")
	if Code(err) != ExitOK || !strings.Contains(stderr, "Examples:") || !strings.Contains(stderr, "--admin-key-file") {
		t.Errorf("station dms --help = %v, %q", err, stderr)
	}
}
