package gdb

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/station-dev/station/flasher"
	"github.com/station-dev/station/flasher/gdb/rsp"
)

// answer is what a server sent for one monitor command.
type answer struct {
	// output is the text of the O packets sent before the final reply.
	output string
	// result is the final reply's text when it is hex output (OpenOCD's
	// Tcl result, all of pyOCD's output); "" for OK.
	result string
	// err is the final reply when it is an error.
	err *rsp.ServerError
}

// printed is everything the command printed.
func (a answer) printed() string { return a.output + a.result }

// dialect is how one kind of GDB server answers monitor commands.
//
//   - OpenOCD logs to O packets while a command runs and sends the
//     command's result as the final hex reply, or OK when it is empty;
//     an unknown command is "invalid command name" and E01
//     (src/server/gdb_server.c gdb_query_packet).
//   - pyOCD sends one hex reply holding all the output, "OK\n" when there
//     is none; an unknown command is "Error: unrecognized command"
//     (pyocd/gdbserver/gdbserver.py handle_remote_command).
//   - probe-rs sends its output as one O packet, then OK, and answers any
//     command it does not know with its help text, "Supported Commands:",
//     and OK (probe-rs-tools gdb_server/target/monitor.rs).
//   - QEMU sends what its human monitor prints as O packets, then OK; an
//     unknown command prints "unknown command:" (monitor/hmp.c).
//   - J-Link prints to O packets, then OK (cortex-debug issue 756 logs);
//     how it answers an unknown command is not known here.
type dialect struct {
	// logOutput says O packets are the server's log: only the final reply
	// is the command's result.
	logOutput bool
	// nothing is what the server prints for a command that printed
	// nothing.
	nothing string
	// unknown begins the server's answer to a command it does not know.
	unknown string
}

var dialects = map[string]dialect{
	KindOpenOCD: {logOutput: true, unknown: "invalid command name"},
	KindPyOCD:   {nothing: "OK", unknown: "Error: unrecognized command"},
	KindProbeRS: {unknown: "Supported Commands:"},
	KindQEMU:    {unknown: "unknown command:"},
	KindJLink:   {},
}

// normalize drops carriage returns and the white space around text.
func normalize(text string) string {
	return strings.TrimSpace(strings.ReplaceAll(text, "\r", ""))
}

// result is what the command printed, as its Success is compared with.
func (d dialect) result(a answer) string {
	text := a.printed()
	if d.logOutput {
		text = a.result
	}
	text = normalize(text)
	if d.nothing != "" && text == d.nothing {
		return ""
	}
	return text
}

// unknownCommand reports whether the answer says the server does not know
// the command.
func (d dialect) unknownCommand(a answer) bool {
	return d.unknown != "" && strings.Contains(a.printed(), d.unknown)
}

// monitor sends a monitor command (qRcmd) and collects the answer. A
// server without monitor commands gives flasher.ErrUnsupported.
func (b *Backend) monitor(ctx context.Context, cmd string) (answer, error) {
	l := b.link
	l.takeOutput()
	req := "qRcmd," + hex.EncodeToString([]byte(cmd))
	r, err := l.roundTrip(ctx, []byte(req), b.cfg.Timeout)
	a := answer{output: l.takeOutput()}
	if err != nil {
		return a, fmt.Errorf("monitor %q: %w", cmd, err)
	}
	switch se := rsp.ParseError(r); {
	case string(r) == "OK":
	case len(r) == 0:
		return a, fmt.Errorf("monitor %q: the GDB server has no monitor commands: %w", cmd, flasher.ErrUnsupported)
	case se != nil:
		a.err = se
	default:
		// The final reply may itself be hex output (the manual's qRcmd
		// "OUTPUT" reply).
		text, err := rsp.ParseHex(nil, r)
		if err != nil {
			return a, fmt.Errorf("monitor %q: reply %q is neither OK nor hex output", cmd, describe(r))
		}
		a.result = string(text)
	}
	b.log.Debug("gdb monitor command", "command", cmd, "output", strings.TrimSpace(a.printed()), "error", a.err)
	return a, nil
}

// Monitor runs a monitor command (qRcmd) and returns what the server
// printed. An error reply is an error; a server without monitor commands
// gives flasher.ErrUnsupported. Whether the command worked is the
// caller's to judge from the text: servers answer OK to commands they do
// not know.
func (b *Backend) Monitor(ctx context.Context, cmd string) (string, error) {
	a, err := b.monitor(ctx, cmd)
	if err == nil && a.err != nil {
		err = fmt.Errorf("monitor %q: %w (output %q)", cmd, a.err, strings.TrimSpace(a.printed()))
	}
	return a.printed(), err
}

// run sends c and succeeds only when the server printed c.Success. A
// command the server does not know gives flasher.ErrUnsupported.
func (b *Backend) run(ctx context.Context, c Command) error {
	a, err := b.monitor(ctx, c.Command)
	if err != nil {
		return err
	}
	got, want := b.res.dialect.result(a), normalize(c.Success)
	if a.err == nil && got == want {
		return nil
	}
	server := b.serverName()
	if b.res.dialect.unknownCommand(a) {
		return fmt.Errorf("%s does not know the monitor command %q: it answered %s: %w", server, c.Command, quote(a.printed()), flasher.ErrUnsupported)
	}
	wantText := "nothing"
	if want != "" {
		wantText = fmt.Sprintf("%q", want)
	}
	var failed string
	if a.err != nil {
		failed = fmt.Sprintf(" and %v", a.err)
	}
	return fmt.Errorf("monitor %q did not work: %s answered %s%s, where success prints %s", c.Command, server, quote(a.printed()), failed, wantText)
}

// quote shows a server's answer in a message: its first lines, quoted.
func quote(text string) string {
	text = normalize(text)
	if text == "" {
		return "nothing"
	}
	const most = 160
	if r := []rune(text); len(r) > most {
		text = string(r[:most]) + "…"
	}
	return fmt.Sprintf("%q", text)
}

// serverName names the GDB server in messages.
func (b *Backend) serverName() string {
	if b.res.server == "" {
		return "the GDB server"
	}
	return "the GDB server (" + b.res.server + ")"
}
