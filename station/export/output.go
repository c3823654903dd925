package export

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/journal"
)

// manifestTemp is where the manifest is written before it is renamed to
// ManifestFile, so that a manifest.json is never a part of one.
const manifestTemp = "." + ManifestFile + ".tmp"

// bufferSize is the write buffer of each file, and the chunk in which a
// protocol transcript is copied.
const bufferSize = 32 << 10

// exporter writes the files of one export as the devices come, one
// device at a time: its row of devices.csv, its events in events.jsonl
// and its section of its transcript.
type exporter struct {
	dir    string
	traces string
	// signs are the journal's sign-ins and sign-outs, which each
	// transcript section shows for its time.
	signs []journal.Event

	devices *output
	events  *output
	csv     *csv.Writer
	enc     *json.Encoder

	// transcripts holds the transcript file of each hardware id
	// exported so far; names the file names taken.
	transcripts map[string]*output
	names       map[string]bool
	// A transcript is open only while a section is written to it: they
	// share one write buffer, one section buffer and one copy buffer.
	buf   *bufio.Writer
	text  bytes.Buffer
	chunk []byte
}

func newExporter(dir, traces string) *exporter {
	return &exporter{
		dir: dir, traces: traces,
		transcripts: map[string]*output{}, names: map[string]bool{},
		buf: bufio.NewWriterSize(nil, bufferSize), chunk: make([]byte, bufferSize),
	}
}

// start creates devices.csv, with its header, and events.jsonl.
func (x *exporter) start() error {
	x.devices = newOutput(DevicesFile)
	if err := x.devices.open(x.dir, bufio.NewWriterSize(nil, bufferSize)); err != nil {
		return err
	}
	x.events = newOutput(EventsFile)
	if err := x.events.open(x.dir, bufio.NewWriterSize(nil, bufferSize)); err != nil {
		return err
	}
	x.csv = csv.NewWriter(x.devices)
	x.enc = json.NewEncoder(x.events)
	x.enc.SetEscapeHTML(false)
	if err := x.csv.Write(CSVHeader()); err != nil {
		return fmt.Errorf("export: write %s: %w", DevicesFile, err)
	}
	return nil
}

// device writes a selected device to every file of the export.
func (x *exporter) device(d device) error {
	if err := x.csv.Write(csvRow(d)); err != nil {
		return fmt.Errorf("export: write %s: %w", DevicesFile, err)
	}
	for _, e := range d.events {
		if err := x.enc.Encode(e); err != nil {
			return fmt.Errorf("export: write %s: event %d: %w", EventsFile, e.Seq, err)
		}
	}
	return x.transcript(d)
}

// transcript appends a device's section, and the protocol transcript the
// runner kept of it, to the device's transcript file. Files are named in
// the order devices first appear: two hardware ids that make the same
// name once made safe get NAME.txt and NAME-2.txt.
func (x *exporter) transcript(d device) (err error) {
	o := x.transcripts[d.key[1]]
	if o == nil {
		if len(x.transcripts) == 0 {
			if err := os.Mkdir(filepath.Join(x.dir, TranscriptsDir), 0o750); err != nil {
				return fmt.Errorf("export: create folder %s: %w", TranscriptsDir, err)
			}
		}
		base := transcriptBase(d.key[1])
		name := base + ".txt"
		for n := 2; x.names[name]; n++ {
			name = fmt.Sprintf("%s-%d.txt", base, n)
		}
		x.names[name] = true
		o = newOutput(TranscriptsDir + "/" + name)
		x.transcripts[d.key[1]] = o
	}
	x.text.Reset()
	writeSection(&x.text, d, x.signs, o.size == 0)
	if err := o.open(x.dir, x.buf); err != nil {
		return err
	}
	defer func() {
		if cerr := o.close(); err == nil {
			err = cerr
		}
	}()
	if _, err := o.Write(x.text.Bytes()); err != nil {
		return fmt.Errorf("export: write %s: %w", o.rel, err)
	}
	if x.traces == "" {
		return nil
	}
	p := filepath.Join(x.traces, d.key[0], jobs.TraceFileName(d.key[1]))
	f, err := os.Open(p)
	if err != nil {
		return nil // the runner kept none
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	if _, err := io.WriteString(o, "\nProtocol transcript (the bootloader's commands and answers):\n"); err != nil {
		return fmt.Errorf("export: write %s: %w", o.rel, err)
	}
	if err := copyRedacted(o, f, x.chunk); err != nil {
		return fmt.Errorf("export: copy protocol transcript %s into %s: %w", p, o.rel, err)
	}
	return nil
}

// finish closes devices.csv and events.jsonl and returns every file
// written, for the manifest. The transcripts are closed already.
func (x *exporter) finish() ([]File, error) {
	x.csv.Flush()
	if err := x.csv.Error(); err != nil {
		return nil, fmt.Errorf("export: write %s: %w", DevicesFile, err)
	}
	if err := x.devices.close(); err != nil {
		return nil, err
	}
	if err := x.events.close(); err != nil {
		return nil, err
	}
	files := make([]File, 0, 2+len(x.transcripts))
	files = append(files, x.devices.file(), x.events.file())
	for _, o := range x.transcripts {
		files = append(files, o.file())
	}
	return files, nil
}

// sign writes the manifest's signature, then the manifest: written in
// full under a temporary name and renamed, so that manifest.json appears
// whole, and only once every file it lists and the signature are on
// disk.
func (x *exporter) sign(manifest []byte, key ed25519.PrivateKey) error {
	if len(x.transcripts) > 0 {
		syncDir(filepath.Join(x.dir, TranscriptsDir))
	}
	sig := hex.EncodeToString(ed25519.Sign(key, manifest)) + "\n"
	if err := writeFile(filepath.Join(x.dir, SignatureFile), []byte(sig)); err != nil {
		return fmt.Errorf("export: write %s: %w", SignatureFile, err)
	}
	tmp := filepath.Join(x.dir, manifestTemp)
	if err := writeFile(tmp, manifest); err != nil {
		return fmt.Errorf("export: write %s: %w", ManifestFile, err)
	}
	syncDir(x.dir)
	if err := os.Rename(tmp, filepath.Join(x.dir, ManifestFile)); err != nil {
		return fmt.Errorf("export: write %s: %w", ManifestFile, err)
	}
	syncDir(x.dir)
	return nil
}

// abandon removes what a failed export wrote, so that nothing of it is
// left to be taken for an export, and dir if prepareDir created it. It
// returns err, saying whether the removal worked.
func (x *exporter) abandon(err error, created bool) error {
	for _, o := range x.transcripts {
		o.discard()
	}
	x.devices.discard()
	x.events.discard()
	var rm []error
	for _, name := range []string{ManifestFile, manifestTemp, SignatureFile, DevicesFile, EventsFile, TranscriptsDir} {
		if err := os.RemoveAll(filepath.Join(x.dir, name)); err != nil {
			rm = append(rm, err)
		}
	}
	if created && len(rm) == 0 {
		if err := os.Remove(x.dir); err != nil {
			rm = append(rm, err)
		}
	}
	if len(rm) > 0 {
		return fmt.Errorf("%w; the unfinished export in %s could not be removed (%w): delete the folder", err, x.dir, errors.Join(rm...))
	}
	return fmt.Errorf("%w (the unfinished export was removed)", err)
}

// syncDir makes the names in a folder durable: a manifest must not
// survive a power cut that the files it lists do not. Best effort, as
// some file systems cannot sync a folder; the files themselves are
// synced, and errors there are reported.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// output is one file of an export. What is written to it goes to the
// file through a buffer, and to the SHA-256 and size the manifest lists
// of it. A transcript is closed between its sections and opened again to
// append the next; its SHA-256 and size carry on.
type output struct {
	rel    string // path in the export, with forward slashes
	sum    hash.Hash
	size   int64
	opened bool          // the file was created
	f      *os.File      // nil while closed
	w      *bufio.Writer // to f and sum, while open
}

func newOutput(rel string) *output {
	return &output{rel: rel, sum: sha256.New()}
}

// open creates the file, which must not exist, or opens it to append.
// Writes go through w until close.
func (o *output) open(dir string, w *bufio.Writer) error {
	flag := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if o.opened {
		flag = os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(filepath.Join(dir, filepath.FromSlash(o.rel)), flag, 0o644)
	if err != nil {
		return fmt.Errorf("export: create %s: %w", o.rel, err)
	}
	w.Reset(io.MultiWriter(f, o.sum))
	o.f, o.w, o.opened = f, w, true
	return nil
}

// Write writes to the open file.
func (o *output) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	o.size += int64(n)
	return n, err
}

// close flushes, syncs and closes the file.
func (o *output) close() error {
	if o.f == nil {
		return nil
	}
	err := o.w.Flush()
	if err == nil {
		err = o.f.Sync()
	}
	err = errors.Join(err, o.f.Close())
	o.f, o.w = nil, nil
	if err != nil {
		return fmt.Errorf("export: write %s: %w", o.rel, err)
	}
	return nil
}

// discard closes the file, if open, without writing what is buffered.
func (o *output) discard() {
	if o == nil || o.f == nil {
		return
	}
	_ = o.f.Close()
	o.f, o.w = nil, nil
}

// file is the manifest's entry for the file.
func (o *output) file() File {
	return File{Path: o.rel, SHA256: hex.EncodeToString(o.sum.Sum(nil)), Size: o.size}
}

// copyRedacted copies r to w with every token tokenPattern matches
// replaced by [redacted], exactly as tokenPattern.ReplaceAllString on the
// whole text would, reading it into buf a part at a time. A token is
// made of ASCII letters, digits, '_' and '-' only, so each part ends
// after a byte that is none of these: no token spans two parts, and the
// pattern's \b sees a non-word character before a part's first byte, as
// it does in the whole text (a byte of a multi-byte character counts as
// one, whole or cut). Only a run of token bytes longer than buf makes buf
// grow.
func copyRedacted(w io.Writer, r io.Reader, buf []byte) error {
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		eof := errors.Is(err, io.EOF)
		if err != nil && !eof {
			return err
		}
		end := len(buf)
		if !eof {
			for end > 0 && tokenByte(buf[end-1]) {
				end--
			}
		}
		if end > 0 {
			if _, err := w.Write(tokenPattern.ReplaceAllLiteral(buf[:end], []byte(redactedValue))); err != nil {
				return err
			}
			buf = buf[:copy(buf, buf[end:])]
		}
		if eof {
			return nil
		}
	}
}

// tokenByte reports whether b may be a part of a token tokenPattern
// matches.
func tokenByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '_' || b == '-'
}
