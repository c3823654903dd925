package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/dms/server"
	"github.com/station-dev/station/station/internal/testkit"
)

// apiDocPath is docs/api.md, from this package's folder.
var apiDocPath = filepath.Join("..", "..", "..", "docs", "api.md")

// docVar is a shell variable in a command.
var docVar = regexp.MustCompile(`\$([A-Z]+)`)

// apiDocExample is a curl command docs/api.md shows, with the answer it
// shows under it.
type apiDocExample struct {
	line    int               // where the command starts in docs/api.md
	cmd     string            // the command as shown, lines and all
	text    string            // the command on one line
	status  int               // the status shown ("HTTP/1.1 201 Created"); 200 when none is
	headers map[string]string // the answer's headers shown
	body    string            // the answer's body shown, if any
}

// apiDocCase is what TestAPIDocExamples expects of the one example whose
// command holds match.
type apiDocCase struct {
	match  string
	status int
	code   string // the error's code, for an error answer
	msg    string // what the error's message says, here and in the doc
	keep   string // the variable that the answer's "secret" fills
	// absent lists the fields of the doc's answer that this run's answer
	// may lack (an omitted empty field, a map's keys), by path.
	absent []string
	check  func(t *testing.T, dir string)
}

// TestAPIDocExamples runs every curl command docs/api.md shows, in the
// order shown and with the arguments shown, with the real curl against a
// DMS started as the doc's "station dms" line starts it: a SQLite file,
// a loopback port and the first admin key written to the key file. Only
// the variables change: $DMS is the DMS's address, $ADMIN the key file's
// key, $STATION and $SUPPORT the keys that examples create, and an
// elided value (stk_…, 2d7116…4881) the value it stands for. Each
// example must answer the status the doc shows (200 when it shows none),
// an error example the code and words the doc shows, a success every
// field the doc's answer names, and the headers the doc shows. So a
// renamed route, field or flag, or an example that needs a step the doc
// does not show, fails here rather than for a reader. An example this
// test does not know fails it too: add it to the table below.
func TestAPIDocExamples(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("curl is not installed: scripts/test installs it (apt-get install curl): %v", err)
		}
		t.Skipf("curl is not installed: scripts/test installs it (apt-get install curl): %v", err)
	}
	examples, dmsLine := readAPIDoc(t)

	image := firmware(1, 64<<10)
	other := firmware(2, 1024)      // the file sent to the wrong path
	named := sum(firmware(3, 1024)) // the file the wrong path names
	files := map[string][]byte{"thermo-app.bin": image, "other.bin": other}
	cases := []apiDocCase{
		{match: "curl -s $DMS/v1/keys", status: 401, code: dmsapi.CodeUnauthenticated, msg: "this call needs an API key"},
		{match: `-d '{"id":"X","nmae":"X"}' $DMS/v1/customers`, status: 400, code: dmsapi.CodeInvalid, msg: `"nmae" is not a field of this call`},
		{match: "curl -s $DMS/healthz", status: 200},
		{match: `-d '{"id":"ACME","name":"Acme Heating"}' $DMS/v1/customers`, status: 201},
		{match: `-d '{"customer":"ACME","code":"THERMO"`, status: 201},
		{match: `-d '{"stage":"production"}' $DMS/v1/products/THERMO`, status: 200},
		{match: `-d '{"stage":"development"}' $DMS/v1/products/THERMO`, status: 409, code: dmsapi.CodeStageChange, msg: "cannot go back to development"},
		{match: `-d '{"role":"station","station":"line-1","name":"line 1"}' $DMS/v1/keys`, status: 201, keep: "STATION"},
		{match: `-d '{"role":"support","product":"THERMO"}' $DMS/v1/keys`, status: 201, keep: "SUPPORT"},
		{match: `-d '{"role":"station","station":"line-2","name":"line 2"}' $DMS/v1/keys`, status: 201},
		{match: `Bearer $SUPPORT" -d '{"id":"X","name":"X"}' $DMS/v1/customers`, status: 403, code: dmsapi.CodeForbidden, msg: "this call needs a key of role admin; key K-4 is a support key"},
		{match: `curl -s -H "Authorization: Bearer $ADMIN" $DMS/v1/keys`, status: 200},
		{match: "-X DELETE -H \"Authorization: Bearer $ADMIN\" $DMS/v1/keys/", status: 204},
		{match: "--data-binary @thermo-app.bin", status: 201},
		{match: "--data-binary @other.bin", status: 422, code: dmsapi.CodeInvalid, msg: "not the one the path names"},
		{match: "$DMS/v1/products/THERMO/bundles", status: 201},
		{match: `-H "Range: bytes=32768-" -o rest.bin`, status: 206, check: func(t *testing.T, dir string) {
			got, err := os.ReadFile(filepath.Join(dir, "rest.bin"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, image[32768:]) {
				t.Errorf("rest.bin = %d bytes, want the artifact's last %d", len(got), len(image)-32768)
			}
		}},
		{match: "$DMS/v1/products/THERMO/tokens", status: 201, keep: "TOKEN"},
		{match: `"lock":{"dms":true},"stations":["line-1"]}' $DMS/v1/work-orders`, status: 201},
		{match: `-d '{"stations":["line-2"]}' $DMS/v1/work-orders/WO-2026-0042/stations`, status: 200},
		{match: "$STATION\" $DMS/v1/work-orders/WO-2026-0042", status: 200},
		{match: "$SUPPORT\" $DMS/v1/tokens/T-1", status: 200},
		{match: "$DMS/v1/purchase-orders", status: 201},
		{match: "$DMS/v1/preflight", status: 200},
		{match: `"token":"stk_…"}' $DMS/v1/activate`, status: 200},
		{match: `"purchase_order":"PO-2026-17"}' $DMS/v1/activate`, status: 409, code: dmsapi.CodeTokenInvalid,
			msg: "work order WO-2026-0042 is authorized by activation token T-1; the request carried purchase order PO-2026-17 instead"},
		{match: "$DMS/v1/lock", status: 204},
		{match: "$DMS/v1/complete", status: 204},
		{match: `"step":"done","status":"passed"}]}' $DMS/v1/stations/line-1/events`, status: 200},
		{match: `"error":"boot\u0000"}]}' $DMS/v1/stations/line-1/events`, status: 422, code: dmsapi.CodeInvalid, msg: `event seq 7: field "error" holds a NUL character`},
		{match: `"work_order":"WO-2026-0099"`, status: 422, code: dmsapi.CodeInvalid,
			msg: `event seq 8: field "work_order" names a work order that is not known to the DMS or is not assigned to station line-1`},
		{match: `-d '{"id":"C1","name":"Acme\u0000"}' $DMS/v1/customers`, status: 422, code: dmsapi.CodeInvalid, msg: `field "name" holds a NUL character`},
		{match: `"$DMS/v1/products/THERMO/devices?limit=1"`, status: 200},
		{match: `"$DMS/v1/products/THERMO/devices?cursor=`, status: 200},
		{match: `"hardware_id":"24:6f:28:aa:bb:02"}' $DMS/v1/claim`, status: 200},
		{match: "$DMS/v1/devices/24:6f:28:aa:bb:01", status: 200},
		{match: "-X DELETE -H \"Authorization: Bearer $ADMIN\" $DMS/v1/products/THERMO", status: 409, code: dmsapi.CodeInUse, msg: "has 2 devices and cannot be deleted: archive it instead"},
		{match: "$DMS/v1/tokens/T-1/revoke", status: 200},
		// The doc shows the flash log of a whole run (16 events); the
		// example before it pushes its last event only: no activate step
		// gives the serial, no flash step an attempt.
		{match: `"$DMS/v1/flash-logs?work_order=WO-2026-0042&result=done"`, status: 200, absent: []string{"[0].attempts.flash", "[0].serial"}},
		{match: `"$DMS/v1/events?station=line-1&after_seq=100&limit=2"`, status: 200},
	}
	plan := apiDocPlan(t, examples, cases)
	if t.Failed() {
		return
	}

	dir := t.TempDir()
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vars := map[string]string{"DMS": startDocDMS(t, dmsLine, dir)}
	key, err := os.ReadFile(filepath.Join(dir, dmsLine.keyFile))
	if err != nil {
		t.Fatal(err)
	}
	vars["ADMIN"] = strings.TrimSpace(string(key))
	// What the elided values of the commands stand for.
	elided := map[string]string{"2d7116…4881": named}

	for i, ex := range examples {
		c := plan[i]
		t.Run(ex.text, func(t *testing.T) {
			cmd := ex.cmd
			for from, to := range elided {
				cmd = strings.ReplaceAll(cmd, from, to)
			}
			if tok, ok := vars["TOKEN"]; ok {
				cmd = strings.ReplaceAll(cmd, "stk_…", tok)
			}
			if strings.Contains(cmd, "…") {
				t.Fatalf("docs/api.md:%d: the command holds an elided value (…) that no earlier example gave", ex.line)
			}
			for _, m := range docVar.FindAllStringSubmatch(cmd, -1) {
				if _, ok := vars[m[1]]; !ok {
					t.Fatalf("docs/api.md:%d uses $%s, which no earlier example makes: show the step that makes it before", ex.line, m[1])
				}
			}
			got := runDocCurl(t, dir, cmd, vars)
			if got.status != c.status {
				t.Fatalf("docs/api.md:%d: status = %d %s, want %d", ex.line, got.status, got.body, c.status)
			}
			if c.code != "" {
				var e dmsapi.Error
				if err := json.Unmarshal(got.body, &e); err != nil {
					t.Fatalf("docs/api.md:%d: answer %s is no error: %v", ex.line, got.body, err)
				}
				if e.Error.Code != c.code || !strings.Contains(e.Error.Message, c.msg) {
					t.Errorf("docs/api.md:%d: error = %s %q, want %s saying %q", ex.line, e.Error.Code, e.Error.Message, c.code, c.msg)
				}
			} else if ex.body != "" {
				var want, have any
				if err := json.Unmarshal([]byte(ex.body), &want); err != nil {
					t.Fatalf("docs/api.md:%d: the answer shown is not JSON: %v", ex.line, err)
				}
				if err := json.Unmarshal(got.body, &have); err != nil {
					t.Fatalf("docs/api.md:%d: answer %s is not JSON: %v", ex.line, got.body, err)
				}
				missing := slices.DeleteFunc(missingFields(want, have, ""), func(f string) bool { return slices.Contains(c.absent, f) })
				if len(missing) > 0 {
					t.Errorf("docs/api.md:%d: answer %s lacks the fields the doc shows: %s", ex.line, got.body, strings.Join(missing, ", "))
				}
			}
			for name, want := range ex.headers {
				if h := got.headers[strings.ToLower(name)]; !slices.Contains(h, want) {
					t.Errorf("docs/api.md:%d: header %s = %q, want %q", ex.line, name, h, want)
				}
			}
			if c.keep != "" {
				var a struct{ Secret string }
				if err := json.Unmarshal(got.body, &a); err != nil || a.Secret == "" {
					t.Fatalf("docs/api.md:%d: answer %s holds no secret for $%s: %v", ex.line, got.body, c.keep, err)
				}
				vars[c.keep] = a.Secret
			}
			if c.check != nil {
				c.check(t, dir)
			}
		})
	}
}

// apiDocPlan pairs each example with the one case that matches it, and
// fails for an example no case knows, or a case no example or several
// match, or a case that says other than the doc.
func apiDocPlan(t *testing.T, examples []apiDocExample, cases []apiDocCase) []apiDocCase {
	t.Helper()
	plan := make([]apiDocCase, len(examples))
	used := make([]int, len(cases))
	for i, ex := range examples {
		var found []int
		for j, c := range cases {
			if strings.Contains(ex.text, c.match) {
				found = append(found, j)
			}
		}
		for _, j := range found {
			used[j]++
		}
		if len(found) != 1 {
			t.Errorf("docs/api.md:%d: %q is matched by %d cases of TestAPIDocExamples, want 1: add it to the table, or make its match unique", ex.line, ex.text, len(found))
			continue
		}
		c := cases[found[0]]
		plan[i] = c
		if ex.status != c.status {
			t.Errorf("docs/api.md:%d shows status %d, the table %d", ex.line, ex.status, c.status)
		}
		var e dmsapi.Error
		if json.Unmarshal([]byte(ex.body), &e) == nil && e.Error.Code != "" || c.code != "" {
			if e.Error.Code != c.code || !strings.Contains(e.Error.Message, c.msg) {
				t.Errorf("docs/api.md:%d shows error %s %q, the table %s saying %q", ex.line, e.Error.Code, e.Error.Message, c.code, c.msg)
			}
		}
	}
	for j, n := range used {
		if n != 1 && len(examples) > 0 {
			t.Errorf("the case %q of TestAPIDocExamples matches %d examples of docs/api.md, want 1", cases[j].match, n)
		}
	}
	return plan
}

// docDMSLine is the doc's "station dms" command, read.
type docDMSLine struct {
	db, listen, keyFile string
}

// readAPIDoc returns the curl examples of docs/api.md's indented code
// blocks, in order, and its one "station dms" line.
func readAPIDoc(t *testing.T) ([]apiDocExample, docDMSLine) {
	t.Helper()
	b, err := os.ReadFile(apiDocPath)
	if err != nil {
		t.Fatal(err)
	}
	var (
		examples []apiDocExample
		cur      *apiDocExample
		open     bool // cur's command goes on
		stations []string
	)
	header := regexp.MustCompile(`^([A-Za-z][A-Za-z0-9-]*): (.*)$`)
	lines := strings.Split(string(b), "\n")
	for i, l := range lines {
		code, ok := strings.CutPrefix(l, "    ")
		switch {
		case open && !ok:
			t.Fatalf("docs/api.md:%d: the command does not end (an open quote or a trailing \\)", cur.line)
		case open:
			cur.cmd += "\n" + code
			open = shellContinues(cur.cmd)
		case !ok:
			cur = nil
		case strings.HasPrefix(code, "curl "):
			examples = append(examples, apiDocExample{line: i + 1, cmd: code, status: 200, headers: map[string]string{}})
			cur = &examples[len(examples)-1]
			open = shellContinues(code)
		case strings.HasPrefix(code, "station dms "):
			stations = append(stations, code)
			cur = nil
		case cur == nil:
		case strings.HasPrefix(code, "HTTP/1.1 ") && cur.body == "" && len(cur.headers) == 0:
			f := strings.Fields(code)
			if cur.status, err = strconv.Atoi(f[1]); err != nil {
				t.Fatalf("docs/api.md:%d: status line %q: %v", i+1, code, err)
			}
		case header.MatchString(code) && cur.body == "":
			m := header.FindStringSubmatch(code)
			cur.headers[m[1]] = m[2]
		default:
			cur.body += code + "\n"
		}
		if cur != nil && !open {
			cur.text = strings.Join(strings.Fields(strings.ReplaceAll(cur.cmd, "\\\n", " ")), " ")
		}
	}
	if len(examples) == 0 {
		t.Fatal("docs/api.md shows no curl command")
	}
	if len(stations) != 1 {
		t.Fatalf("docs/api.md shows %d station dms lines %q, want 1", len(stations), stations)
	}
	return examples, parseDocDMSLine(t, stations[0])
}

// parseDocDMSLine reads the flags of the doc's "station dms" line. A
// flag this test does not know fails it: teach startDocDMS the flag.
func parseDocDMSLine(t *testing.T, line string) docDMSLine {
	t.Helper()
	args := strings.Fields(strings.TrimPrefix(line, "station dms "))
	var d docDMSLine
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			t.Fatalf("docs/api.md: %q: flag %s has no value", line, args[i])
		}
		v := args[i+1]
		switch args[i] {
		case "--db":
			d.db = v
		case "--listen":
			d.listen = v
		case "--admin-key-file":
			d.keyFile = v
		default:
			t.Fatalf("docs/api.md: %q: TestAPIDocExamples does not know the flag %s: teach startDocDMS it", line, args[i])
		}
	}
	if !strings.HasPrefix(d.db, "sqlite:") || d.listen == "" || d.keyFile == "" {
		t.Fatalf("docs/api.md: %q: want --db sqlite:FILE, --listen and --admin-key-file", line)
	}
	return d
}

// startDocDMS starts the DMS as the doc's "station dms" line does, with
// dir for its current folder: the database sqlite:FILE, the first admin
// key created and written to the key file (mode 0600), served on the
// doc's host with a free port, the clock stopped at the time of the
// doc's answers. It returns the DMS's address.
func startDocDMS(t *testing.T, d docDMSLine, dir string) string {
	t.Helper()
	ctx := context.Background()
	store, err := dms.Open(ctx, "sqlite:"+filepath.Join(dir, strings.TrimPrefix(d.db, "sqlite:")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	logs := &testkit.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the DMS's log:\n%s", logs)
		}
	})
	logger := slog.New(slog.NewTextHandler(logs, nil))
	clock := testkit.NewClock(time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC))
	svc := &dms.Service{Store: store, Clock: clock.Now, Logger: logger, TokenKey: []byte("api.md token key")}

	_, secret, err := svc.CreateKey(ctx, dms.Key{Role: dms.RoleAdmin, Name: "first admin key"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, d.keyFile), []byte(secret.Reveal()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	host, _, err := net.SplitHostPort(d.listen)
	if err != nil {
		t.Fatalf("docs/api.md: --listen %s: %v", d.listen, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Fatalf("docs/api.md: --listen %s: want a loopback address, which this test can serve on", d.listen)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(server.New(server.Config{Service: svc, Logger: logger, UploadDir: filepath.Join(dir, "uploads")}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

// docAnswer is what curl received.
type docAnswer struct {
	status  int
	headers map[string][]string // by lower-case name
	body    []byte
}

// curlMark parts curl's output from what -w writes after it.
const curlMark = "\n--api.md-curl-w--\n"

// runDocCurl runs cmd with sh in dir, with only vars, PATH and HOME (dir,
// so that no ~/.curlrc applies) in its environment, and returns what
// curl received: -w appended writes the status and the headers.
func runDocCurl(t *testing.T, dir, cmd string, vars map[string]string) docAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	script := cmd + ` -w '` + strings.ReplaceAll(curlMark, "\n", `\n`) + `%{http_code}\n%{header_json}'`
	c := exec.CommandContext(ctx, "sh", "-c", script)
	c.Dir = dir
	c.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "LC_ALL=C"}
	if mark, ok := os.LookupEnv("STATION_TEST_RUN"); ok {
		c.Env = append(c.Env, "STATION_TEST_RUN="+mark)
	}
	for k, v := range vars {
		c.Env = append(c.Env, k+"="+v)
	}
	var stderr bytes.Buffer
	c.Stderr = &stderr
	c.WaitDelay = 5 * time.Second
	out, err := c.Output()
	if err != nil {
		t.Fatalf("curl = %v, want exit 0; stderr: %s", err, stderr.Bytes())
	}
	i := bytes.LastIndex(out, []byte(curlMark))
	if i < 0 {
		t.Fatalf("curl wrote %q, without what -w writes", out)
	}
	a := docAnswer{body: out[:i]}
	code, hj, _ := strings.Cut(string(out[i+len(curlMark):]), "\n")
	if a.status, err = strconv.Atoi(code); err != nil {
		t.Fatalf("curl -w %%{http_code} = %q: %v", code, err)
	}
	if err := json.Unmarshal([]byte(hj), &a.headers); err != nil {
		t.Fatalf("curl -w %%{header_json} = %q: %v", hj, err)
	}
	return a
}

// shellContinues reports whether the shell would read on past the end of
// s: a quote is open, or s ends with a backslash.
func shellContinues(s string) bool {
	var quote byte
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case quote == '\'':
			if ch == '\'' {
				quote = 0
			}
		case ch == '\\':
			if i+1 == len(s) {
				return true
			}
			i++
		case quote == '"':
			if ch == '"' {
				quote = 0
			}
		case ch == '\'' || ch == '"':
			quote = ch
		}
	}
	return quote != 0
}

// missingFields lists the object fields that doc holds and got lacks, by
// path; for a list, what its first item holds that got's first lacks.
func missingFields(doc, got any, path string) []string {
	var out []string
	switch d := doc.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s (an object, got %T)", strings.TrimPrefix(path, "."), got)}
		}
		keys := make([]string, 0, len(d))
		for k := range d {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				out = append(out, strings.TrimPrefix(path+"."+k, "."))
				continue
			}
			out = append(out, missingFields(d[k], gv, path+"."+k)...)
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s (a list, got %T)", strings.TrimPrefix(path, "."), got)}
		}
		if len(d) > 0 && len(g) > 0 {
			out = append(out, missingFields(d[0], g[0], path+"[0]")...)
		}
	}
	return out
}
