package export

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// VerifyError says which file of an export failed verification and why.
type VerifyError struct {
	// File is the path of the file in the export, with forward slashes.
	File   string
	Reason string
}

func (e *VerifyError) Error() string { return e.File + ": " + e.Reason }

// Report is what Check found in a sound export.
type Report struct {
	Manifest Manifest
	// PublicKey is the hex key the signature was checked with.
	PublicKey string
	// KeyFromManifest is true when no key was given and the manifest's
	// own key was used: that proves the export is unchanged since it was
	// signed, not which station signed it.
	KeyFromManifest bool
}

// Verify checks the export in dir: the manifest's signature (with pub,
// or with the manifest's own key if pub is nil), every listed file's size
// and SHA-256, and that no file is there that the manifest does not list.
// A failure is a *VerifyError naming the file.
func Verify(dir string, pub ed25519.PublicKey) error {
	_, err := Check(dir, pub)
	return err
}

// Check is Verify that also returns what it checked.
func Check(dir string, pub ed25519.PublicKey) (Report, error) {
	fail := func(file, format string, args ...any) (Report, error) {
		return Report{}, fmt.Errorf("export %s is not intact: %w", dir, &VerifyError{File: file, Reason: fmt.Sprintf(format, args...)})
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return Report{}, fmt.Errorf("verify export: %s is not a folder: name the export folder", dir)
	}
	raw, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		return fail(ManifestFile, "missing: this is not an export folder, or its export did not finish (the manifest is written last)")
	}
	if err != nil {
		return fail(ManifestFile, "cannot read it (%v): is this an export folder?", err)
	}
	sigText, err := os.ReadFile(filepath.Join(dir, SignatureFile))
	if err != nil {
		return fail(SignatureFile, "cannot read it (%v): the export is not signed", err)
	}
	sig, err := hex.DecodeString(strings.TrimSuffix(string(sigText), "\n"))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fail(SignatureFile, "not a hex ed25519 signature: the file was changed")
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return fail(ManifestFile, "not a valid manifest (%v): the file was changed", err)
	}
	rep := Report{Manifest: m}
	if pub == nil {
		k, err := hex.DecodeString(m.PublicKey)
		if err != nil || len(k) != ed25519.PublicKeySize {
			return fail(ManifestFile, "public_key is not a hex ed25519 key: the file was changed")
		}
		pub, rep.KeyFromManifest = k, true
	} else if len(pub) != ed25519.PublicKeySize {
		return Report{}, fmt.Errorf("verify export %s: the public key given has %d bytes, want %d", dir, len(pub), ed25519.PublicKeySize)
	}
	rep.PublicKey = hex.EncodeToString(pub)
	if !ed25519.Verify(pub, raw, sig) {
		if !rep.KeyFromManifest && m.PublicKey != rep.PublicKey {
			return fail(SignatureFile, "not signed with the key given (the manifest names key %s): the export comes from another station or was re-signed", m.PublicKey)
		}
		return fail(ManifestFile, "the signature in %s does not match %s: one of the two was changed", SignatureFile, ManifestFile)
	}
	listed := map[string]File{}
	for _, f := range m.Files {
		listed[f.Path] = f
	}
	for _, f := range m.Files {
		if !fs.ValidPath(f.Path) {
			return fail(f.Path, "the manifest lists a path outside the export")
		}
		size, sum, err := hashFile(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil {
			return fail(f.Path, "listed in the manifest but cannot be read (%v)", err)
		}
		if size != f.Size {
			return fail(f.Path, "size is %d bytes, the manifest says %d: the file was changed", size, f.Size)
		}
		if sum != f.SHA256 {
			return fail(f.Path, "SHA-256 differs from the manifest: the file was changed")
		}
	}
	var extra string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if _, ok := listed[rel]; !ok && rel != ManifestFile && rel != SignatureFile {
			extra = rel
			return fs.SkipAll
		}
		return nil
	})
	if err != nil {
		return Report{}, fmt.Errorf("verify export %s: list files: %w", dir, err)
	}
	if extra != "" {
		return fail(extra, "not listed in the manifest: a file was added to the export")
	}
	return rep, nil
}

// hashFile returns a file's size and hex SHA-256, reading it a buffer at
// a time: an export's files can be larger than memory.
func hashFile(path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// IsVerifyError reports whether err says an export is not intact (as
// opposed to a problem reading it).
func IsVerifyError(err error) bool {
	var ve *VerifyError
	return errors.As(err, &ve)
}
