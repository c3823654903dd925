// Package pgtest runs a throwaway PostgreSQL cluster for tests: initdb in
// a temporary folder, a server on a free loopback port with fsync off and
// trust authentication, and a fresh database for each test. It uses the
// Debian binaries (package postgresql), which scripts/test installs.
//
// A test binary that needs PostgreSQL calls Main from TestMain, and
// NewDatabase in each test:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestX(t *testing.T) {
//		url := pgtest.NewDatabase(t) // postgres://postgres@127.0.0.1:PORT/tN?sslmode=disable
//		...
//	}
//
// The cluster starts with the first NewDatabase, once per test binary, and
// Main stops it and removes its folder when the tests are over. Without
// the binaries, NewDatabase skips the test, or fails it when the
// environment variable CI is set: CI must run every test.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNotInstalled means the PostgreSQL server binaries were not found.
var ErrNotInstalled = errors.New("the PostgreSQL server (initdb, postgres) is not installed: run scripts/test, which installs the Debian package postgresql")

// binDirs are the folders searched for initdb and postgres, in order; the
// environment variable PGTEST_BIN, when set, is searched first.
var binDirs = []string{"/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin"}

// superuser is the cluster's superuser, trusted on loopback.
const superuser = "postgres"

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	dir  string // temporary folder: data/, the socket, the log
	bin  string
	port int
	// runAs is the system user the server runs as when the tests run as
	// root, which PostgreSQL refuses; nil runs as the current user.
	runAs *syscall.Credential
	// server is the running postmaster, a child of the test binary.
	server *exec.Cmd
	exited chan struct{} // closed when server has exited

	mu sync.Mutex
	n  int // databases created
}

// StartCluster creates a cluster in a new temporary folder and starts it
// on a free port of 127.0.0.1. Stop it with Stop.
func StartCluster(ctx context.Context) (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: create cluster folder: %w", err)
	}
	c := &Cluster{dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		if err := c.giveToPostgres(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if err := c.initdb(ctx); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A free port may be taken between asking and listening: try again.
	for attempt := 1; ; attempt++ {
		if err = c.start(ctx); err == nil {
			return c, nil
		}
		if attempt == 3 || ctx.Err() != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

func findBin() (string, error) {
	dirs := binDirs
	if env := os.Getenv("PGTEST_BIN"); env != "" {
		dirs = append([]string{env}, dirs...)
	}
	for _, pattern := range dirs {
		matches, _ := filepath.Glob(pattern)
		// The newest version first: /usr/lib/postgresql/16 before 15.
		sort.Sort(sort.Reverse(sort.StringSlice(matches)))
		for _, d := range matches {
			if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
				return d, nil
			}
		}
	}
	return "", ErrNotInstalled
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// giveToPostgres makes the folder the postgres user's, for a server run
// as that user.
func (c *Cluster) giveToPostgres() error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("pgtest: running as root, PostgreSQL must run as the system user postgres, which is missing (%w): install the Debian package postgresql", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(c.dir, uid, gid); err != nil {
		return fmt.Errorf("pgtest: give the cluster folder to postgres: %w", err)
	}
	c.runAs = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	return nil
}

// command runs a PostgreSQL binary, as the postgres user when needed. It
// is started directly, not through runuser or pg_ctl, so that it is the
// test binary's own child: it leads its own process group and the kernel
// sends it sig when the test binary dies, even by a timeout.
func (c *Cluster) command(ctx context.Context, sig syscall.Signal, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: sig, Credential: c.runAs}
	// The server's user may not be able to enter the test's folder.
	cmd.Dir = c.dir
	return cmd
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) error {
	out, err := c.command(ctx, syscall.SIGKILL, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pgtest: %s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

func (c *Cluster) initdb(ctx context.Context) error {
	return c.run(ctx, "initdb", "-D", c.data(), "-U", superuser, "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync")
}

func (c *Cluster) start(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	c.port = port
	opts := strings.Join([]string{
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + c.dir,
		"-c", "max_connections=300",
		// A throwaway cluster: nothing needs to survive a crash.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
	}, " ")
	logFile := filepath.Join(c.dir, "server.log")
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: server log: %w", err)
	}
	defer log.Close()
	// postgres itself in the foreground, not pg_ctl (whose server would
	// be nobody's child): SIGQUIT is PostgreSQL's immediate shutdown,
	// which also ends the server's own children.
	cmd := c.command(context.WithoutCancel(ctx), syscall.SIGQUIT, "postgres", append([]string{"-D", c.data()}, strings.Fields(opts)...)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	c.server, c.exited = cmd, exited
	// Ready when it accepts a connection; a server that exits (its port
	// was taken meanwhile) is an error the caller retries.
	for {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logFile)
			return fmt.Errorf("pgtest: postgres exited at start: %s\nserver log:\n%s", cmd.ProcessState, b)
		case <-ctx.Done():
			c.kill()
			b, _ := os.ReadFile(logFile)
			return fmt.Errorf("pgtest: postgres did not accept connections: %w\nserver log:\n%s", ctx.Err(), b)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// kill shuts the server down at once (SIGQUIT, PostgreSQL's immediate
// mode), then kills its process group if it lingers, and waits for it.
func (c *Cluster) kill() {
	if c.server == nil {
		return
	}
	c.server.Process.Signal(syscall.SIGQUIT)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		syscall.Kill(-c.server.Process.Pid, syscall.SIGKILL)
		<-c.exited
	}
	// Whatever the postmaster left in its group goes too.
	syscall.Kill(-c.server.Process.Pid, syscall.SIGKILL)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// URL returns the URL of database db on the cluster.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, c.port, db)
}

// admin runs one statement on the maintenance database.
func (c *Cluster) admin(ctx context.Context, stmt string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("pgtest: %s: %w", stmt, err)
	}
	return nil
}

// CreateDatabase creates a new, empty database and returns its name.
func (c *Cluster) CreateDatabase(ctx context.Context) (string, error) {
	c.mu.Lock()
	c.n++
	name := "t" + strconv.Itoa(c.n)
	c.mu.Unlock()
	if err := c.admin(ctx, "CREATE DATABASE "+name); err != nil {
		return "", err
	}
	return name, nil
}

// DropDatabase drops the database name, closing its sessions.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	return c.admin(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
}

// Stop stops the server at once and removes its folder.
func (c *Cluster) Stop() error {
	c.kill()
	return os.RemoveAll(c.dir)
}

// shared is the test binary's cluster, started by the first NewDatabase
// and stopped by Main.
var shared struct {
	mu      sync.Mutex
	main    bool
	started bool
	c       *Cluster
	err     error
}

// Main runs the tests, then stops the cluster NewDatabase started, and
// exits with the tests' status. Call it from TestMain.
func Main(m *testing.M) {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	c := shared.c
	shared.mu.Unlock()
	if c != nil {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// NewDatabase returns the URL of a new, empty database on the test
// binary's cluster, dropped when t ends. It starts the cluster the first
// time. Without PostgreSQL it skips t, or fails it when CI is set.
func NewDatabase(t testing.TB) string {
	t.Helper()
	c, err := cluster()
	if errors.Is(err, ErrNotInstalled) && os.Getenv("CI") == "" {
		t.Skipf("pgtest: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	name, err := c.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.DropDatabase(ctx, name); err != nil {
			t.Errorf("pgtest: drop the test's database: %v", err)
		}
	})
	return c.URL(name)
}

func cluster() (*Cluster, error) {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		return nil, errors.New("pgtest: call pgtest.Main(m) from the package's TestMain, so that the cluster is stopped after the tests")
	}
	if !shared.started {
		shared.started = true
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		shared.c, shared.err = StartCluster(ctx)
	}
	return shared.c, shared.err
}
