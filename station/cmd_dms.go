package station

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
	"github.com/station-dev/station/station/dms/server"
)

const dmsHelp = `
station dms: serve the device-management service (DMS) over HTTP, as
docs/api.md describes: the catalogue, work orders, activation tokens, devices
and the stations' journals. It runs until interrupted (Ctrl-C, SIGTERM), then
finishes the calls in progress.

Every call but GET /healthz and POST /v1/claim needs an API key. A new DMS has
none: --admin-key-file FILE creates the first admin key and writes it to FILE
(mode 0600); the key is never printed or logged. Keep FILE safe, and make the
other keys with it (POST /v1/keys).

The token key (--token-key-file) keys the hashes under which token and API key
secrets are stored: keep it outside the database, and keep it for good, since
changing it invalidates every token and key.

  station dms claim --url URL --hardware-id HW PRODUCT TOKEN
claims a device for PRODUCT with an activation token, as a device does
("dms claim <product-code> <token>"); TOKEN "-" reads it from stdin, and
without TOKEN it is read from STATION_TOKEN, so that it stays out of the
process list.

Examples:
  station dms --db sqlite:dms.db --listen 127.0.0.1:8700 --admin-key-file admin.key
  station dms --db postgres://dms@db/dms --listen :8700 --token-key-file /etc/dms/token.key
  echo stk_... | station dms claim --url http://dms:8700 --hardware-id 24:6f:28:aa:bb:01 THERMO -
`

// dmsShutdownGrace is how long the calls in progress have to finish once
// the DMS is asked to stop.
const dmsShutdownGrace = 15 * time.Second

// dmsCmd is "station dms".
func (m *Main) dmsCmd(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "claim" {
		return m.dmsClaim(ctx, args[1:])
	}
	fs := m.newFlagSet("dms", dmsHelp)
	var (
		dsn, listen, adminKeyFile, tokenKeyFile, uploadDir string
		asJSON                                             bool
	)
	fs.StringVar(&dsn, "db", "", "the database: sqlite:`FILE` or a postgres:// URL")
	fs.StringVar(&listen, "listen", "127.0.0.1:8700", "`address` to serve on (port 0: any free port)")
	fs.StringVar(&adminKeyFile, "admin-key-file", "", "when the DMS has no admin key, create one and write it to this new `file` (mode 0600)")
	fs.StringVar(&tokenKeyFile, "token-key-file", "", "`file` holding the key of the token and API key hashes (default: none)")
	fs.StringVar(&uploadDir, "upload-dir", "", "`folder` where uploaded artifacts wait for their bundle (default: in the temporary folder)")
	fs.BoolVar(&asJSON, "json", false, "print where the DMS listens as a JSON line")
	logger, err := m.parseWithLogger(fs, args, "info") // a server's requests are its record
	if err != nil {
		return err
	}
	if dsn == "" {
		return usageErr("--db is required: sqlite:FILE or a postgres:// URL")
	}
	var tokenKey []byte
	if tokenKeyFile != "" {
		if tokenKey, err = readTokenKey(tokenKeyFile); err != nil {
			return err
		}
	}
	store, err := openDMSStore(ctx, dsn, logger)
	if err != nil {
		return err
	}
	defer store.Close()
	svc := &dms.Service{Store: store, Logger: logger, TokenKey: tokenKey}

	keyNote, err := ensureAdminKey(ctx, svc, adminKeyFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another DMS running there? pick another --listen)", listen, err)
	}
	addr := ln.Addr().String()
	srv := &http.Server{
		Handler:           server.New(server.Config{Service: svc, Logger: logger, UploadDir: uploadDir}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	if asJSON {
		line := map[string]string{"listening": "http://" + addr, "address": addr}
		if keyNote.path != "" {
			line["admin_key_file"] = keyNote.path
		}
		if err := json.NewEncoder(m.Stdout).Encode(line); err != nil {
			return err
		}
	} else {
		if keyNote.text != "" {
			fmt.Fprintln(m.Stdout, keyNote.text)
		}
		fmt.Fprintf(m.Stdout, "dms listening on http://%s\n", addr)
	}
	logger.Info("dms listening", "address", addr)

	select {
	case err := <-served:
		return fmt.Errorf("serve on %s: %w", addr, err)
	case <-ctx.Done():
	}
	logger.Info("dms stopping: finishing the calls in progress")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dmsShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
		return fmt.Errorf("stop the DMS: %w", err)
	}
	<-served
	return nil
}

// openDMSStore opens the database named by dsn: "sqlite:FILE" or a
// postgres:// URL, logging to logger what opening changes. The URL is
// never echoed: it may hold a password.
func openDMSStore(ctx context.Context, dsn string, logger *slog.Logger) (*dms.Store, error) {
	switch {
	case dsn == "sqlite:":
		return nil, usageErr("--db sqlite: needs a file, as in sqlite:dms.db")
	case !strings.HasPrefix(dsn, "sqlite:") && !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://"):
		return nil, usageErr("--db: use sqlite:FILE or a postgres://USER@HOST:PORT/DATABASE URL")
	}
	return dms.Open(ctx, dsn, dms.WithLogger(logger))
}

// readTokenKey reads the key of the secrets' hashes.
func readTokenKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("token key file %s does not exist: create it once, e.g. with: head -c 32 /dev/urandom | base64 > %s; chmod 600 %s", path, path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("read token key: %w", err)
	}
	key := bytes.TrimSpace(b)
	if len(key) == 0 {
		return nil, fmt.Errorf("token key file %s is empty: put a random key in it (32 bytes or more)", path)
	}
	return key, nil
}

// adminKeyNote says what became of the first admin key.
type adminKeyNote struct {
	path string // the file written, if one was
	text string // a line for the operator
}

// ensureAdminKey creates the first admin key when the DMS has none and
// path is given, and writes its secret to the new file path (mode 0600).
// The secret goes nowhere else.
func ensureAdminKey(ctx context.Context, svc *dms.Service, path string) (adminKeyNote, error) {
	has, err := svc.HasAdminKey(ctx)
	if err != nil {
		return adminKeyNote{}, err
	}
	switch {
	case has && path != "":
		return adminKeyNote{text: fmt.Sprintf("the DMS has an admin key already: %s left alone", path)}, nil
	case has:
		return adminKeyNote{}, nil
	case path == "":
		return adminKeyNote{text: "the DMS has no admin key: restart it with --admin-key-file FILE to create one"}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return adminKeyNote{}, fmt.Errorf("--admin-key-file %s exists already: the DMS writes a new admin key only to a new file; move it away or name another", path)
	}
	if err != nil {
		return adminKeyNote{}, fmt.Errorf("create admin key file: %w", err)
	}
	_, secret, err := svc.CreateKey(ctx, dms.Key{Role: dms.RoleAdmin, Name: "first admin key"})
	if err == nil {
		_, err = fmt.Fprintln(f, secret.Reveal())
		if err == nil {
			err = f.Sync()
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return adminKeyNote{}, fmt.Errorf("write the first admin key to %s: %w", path, err)
	}
	return adminKeyNote{path: path, text: fmt.Sprintf("admin key created and written to %s (mode 0600): keep it safe, it is shown nowhere else", path)}, nil
}

const dmsClaimHelp = `
station dms claim: claim a device for a product with an activation token, as
the device itself would ("dms claim <product-code> <token>"). The token is the
only credential needed. Claiming the same device again uses no second claim.

Usage:
  station dms claim --url URL --hardware-id HW [--firmware-version V] PRODUCT [TOKEN]

TOKEN "-" reads the token from stdin; without TOKEN it comes from
STATION_TOKEN. Either keeps it out of the process list.

Examples:
  echo stk_... | station dms claim --url http://dms:8700 --hardware-id 24:6f:28:aa:bb:01 THERMO -
  STATION_TOKEN=stk_... station dms claim --url http://dms:8700 --hardware-id 0x3a00221 THERMO
`

// dmsClaim is "station dms claim".
func (m *Main) dmsClaim(ctx context.Context, args []string) error {
	fs := m.newFlagSet("dms claim", dmsClaimHelp)
	var (
		url, hw, firmware string
		timeout           time.Duration
		asJSON            bool
	)
	fs.StringVar(&url, "url", "", "the DMS's `URL`, as in http://dms:8700")
	fs.StringVar(&hw, "hardware-id", "", "the device's hardware `id` (MAC, chip UID, USB serial ...)")
	fs.StringVar(&firmware, "firmware-version", "", "the bundle `version` the device runs, if any")
	fs.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the DMS")
	fs.BoolVar(&asJSON, "json", false, "print the activation as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &ExitError{Code: ExitUsage, Err: err}
	}
	switch {
	case url == "":
		return usageErr("--url is required: the DMS's address, as in http://dms:8700")
	case hw == "":
		return usageErr("--hardware-id is required: the id read from the device's chip")
	case fs.NArg() < 1:
		return usageErr("give the product code, then the token (or \"-\" to read it from stdin)")
	case fs.NArg() > 2:
		return usageErr("unexpected argument %q: give PRODUCT and TOKEN only", fs.Arg(2))
	}
	product := fs.Arg(0)
	token := m.Getenv("STATION_TOKEN")
	switch {
	case fs.Arg(1) == "-":
		line, err := bufio.NewReader(m.stdin()).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read the token from stdin: %w", err)
		}
		token = strings.TrimSpace(line)
	case fs.NArg() == 2:
		token = fs.Arg(1)
	}
	if token == "" {
		return usageErr("no activation token: give it as TOKEN, \"-\" to read it from stdin, or in STATION_TOKEN")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	act, err := claimDevice(ctx, url, dmsapi.ClaimRequest{
		Product: product, Token: token, HardwareID: flasher.HardwareID(hw), FirmwareVersion: firmware,
	})
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(m.Stdout).Encode(act)
	}
	what := "claimed"
	if act.Repeat {
		what = "already claimed (no claim used)"
	}
	locked := ""
	if act.Locked {
		locked = ", locked to " + product
	}
	fmt.Fprintf(m.Stdout, "device %s %s for %s: serial %s%s\n", hw, what, product, act.Serial, locked)
	if act.ClaimsLeft >= 0 {
		fmt.Fprintf(m.Stdout, "claims left on the token: %d\n", act.ClaimsLeft)
	}
	return nil
}

// claimDevice posts req to the DMS at baseURL. A refusal comes back as
// an ExitFailed error with the DMS's words and code.
func claimDevice(ctx context.Context, baseURL string, req dmsapi.ClaimRequest) (jobs.Activation, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return jobs.Activation{}, err
	}
	u := strings.TrimRight(baseURL, "/") + dmsapi.PathClaim
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return jobs.Activation{}, usageErr("--url %q is not a URL: %v", baseURL, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return jobs.Activation{}, fmt.Errorf("cannot reach the DMS at %s: %w: check --url and the network", baseURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return jobs.Activation{}, fmt.Errorf("read the DMS's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e dmsapi.Error
		if json.Unmarshal(data, &e) != nil || e.Error.Code == "" {
			return jobs.Activation{}, fmt.Errorf("the DMS at %s answered %s: is it a DMS? check --url", baseURL, resp.Status)
		}
		code := ExitFailed
		if resp.StatusCode >= 500 {
			code = ExitProblem
		}
		return jobs.Activation{}, &ExitError{Code: code, Err: fmt.Errorf("claim refused (%s): %s", e.Error.Code, e.Error.Message)}
	}
	var act jobs.Activation
	if err := json.Unmarshal(data, &act); err != nil {
		return jobs.Activation{}, fmt.Errorf("read the DMS's answer: %w", err)
	}
	return act, nil
}

// stdin is what the command reads from standard input.
func (m *Main) stdin() io.Reader {
	if m.Stdin == nil {
		return os.Stdin
	}
	return m.Stdin
}
