package station

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/station-dev/station/station/journal"
)

const syncHelp = `
station sync resend: send events the DMS refused to it again.

The station sets aside an event the DMS refuses for good (the DMS answers
422 naming the event): the event stays in the journal, a station event
sync_refused records the DMS's reason, and the event is not sent again, so
that the events after it go up. When the DMS refused events wrongly (a bug
of the DMS, since fixed), mark them to be sent again: the next sync (the
station daemon's, within a second, or the next "station run") sends them,
before the newer events, and each once. An event the DMS refuses again is
set aside again.

The command journals a station event sync_resend naming the events and
rewrites nothing. Name the events by their sequence number (--seq, as the
refusal names them: the sync status's last_refused, or the journal's
sync_refused events), or take every event that stays refused (--all). A
--seq that is not refused now is an error, and nothing is marked. Run it as
the user that owns the journal (on a line PC: sudo -u station); the daemon
may keep running.

Exit status: 0 done (with --all, also when nothing is refused), 2 wrong
command line, 3 a --seq that is not refused, or the journal could not be
read or written.

Examples:
  station sync resend --journal /var/lib/station/journal.db --seq 17 --seq 19
  station sync resend --journal /var/lib/station/journal.db --all --json
`

// syncCmd is "station sync".
func (m *Main) syncCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || args[0] != "resend" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(m.Stdout, strings.TrimLeft(syncHelp, "\n"))
			return nil
		}
		fmt.Fprint(m.Stderr, strings.TrimLeft(syncHelp, "\n"))
		return usageErr("say what to do: station sync resend")
	}
	fs := m.newFlagSet("sync resend", syncHelp)
	var (
		journalPath string
		seqs        []int64
		all, asJSON bool
	)
	fs.StringVar(&journalPath, "journal", "station-journal.db", "journal `file` (SQLite) whose refused events to send again")
	fs.Func("seq", "send the refused event with this sequence `number` again (repeat for more)", func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return errors.New("a sequence number is a whole number from 1")
		}
		seqs = append(seqs, n)
		return nil
	})
	fs.BoolVar(&all, "all", false, "send every event that stays refused again")
	fs.BoolVar(&asJSON, "json", false, "print the summary as JSON on stdout")
	logger, err := m.parseWithLogger(fs, args[1:], "warn")
	if err != nil {
		return err
	}
	switch {
	case all && len(seqs) > 0:
		return usageErr("give --seq or --all, not both")
	case !all && len(seqs) == 0:
		return usageErr("name the events to send again: --seq N (repeat for more), or --all")
	}
	if _, err := os.Stat(journalPath); err != nil {
		return fmt.Errorf("no journal at %s: give the station's journal with --journal", journalPath)
	}
	stationID, err := journal.StationOf(ctx, journalPath)
	if err != nil {
		return err
	}
	j, err := journal.Open(ctx, journalPath, stationID, logger)
	if err != nil {
		return err
	}
	defer j.Close()
	if all {
		refused, err := j.Refused(ctx)
		if err != nil {
			return err
		}
		for _, r := range refused {
			seqs = append(seqs, r.Seq)
		}
	}
	if len(seqs) > 0 {
		if err := j.Resend(ctx, seqs); err != nil {
			return err
		}
	}
	left, err := j.Refused(ctx)
	if err != nil {
		return err
	}
	marked := uniqueSeqs(seqs)
	logger.Info("refused events marked to be sent again", "journal", journalPath, "events", len(marked))
	if asJSON {
		if marked == nil {
			marked = []int64{}
		}
		return json.NewEncoder(m.Stdout).Encode(map[string]any{
			"journal": journalPath, "station": stationID, "resend": len(marked), "seqs": marked, "still_refused": len(left),
		})
	}
	if len(marked) == 0 {
		fmt.Fprintf(m.Stdout, "no event of %s is refused: nothing to send again\n", journalPath)
		return nil
	}
	fmt.Fprintf(m.Stdout, "refused events marked to be sent again: %d (%s); the next sync sends them\n", len(marked), seqList(marked))
	if len(left) > 0 {
		fmt.Fprintf(m.Stdout, "events that stay refused: %d\n", len(left))
	}
	return nil
}

// uniqueSeqs returns seqs sorted, each once.
func uniqueSeqs(seqs []int64) []int64 {
	out := slices.Clone(seqs)
	slices.Sort(out)
	return slices.Compact(out)
}

// seqListMax is how many seqs a summary names.
const seqListMax = 20

// seqList names seqs for a summary: "seq 4", "seqs 2, 4", the first
// seqListMax of many and how many more.
func seqList(seqs []int64) string {
	var b strings.Builder
	b.WriteString("seq")
	if len(seqs) > 1 {
		b.WriteString("s")
	}
	for i, s := range seqs[:min(len(seqs), seqListMax)] {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %d", s)
	}
	if n := len(seqs) - seqListMax; n > 0 {
		fmt.Fprintf(&b, " and %d more", n)
	}
	return b.String()
}
