package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
)

// Keys.

type createKeyRequest struct {
	Role    dms.Role `json:"role"`
	Product string   `json:"product"`
	Station string   `json:"station"`
	Name    string   `json:"name"`
}

// createdKey is the one answer that holds a key's secret.
type createdKey struct {
	Key    dms.Key `json:"key"`
	Secret string  `json:"secret"`
}

func (s *server) createKey(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	var req createKeyRequest
	if err := decode(w, r, MaxJSONBody, &req); err != nil {
		return err
	}
	k, secret, err := s.svc.CreateKey(r.Context(), dms.Key{Role: req.Role, Product: req.Product, Station: req.Station, Name: req.Name})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, createdKey{Key: k, Secret: secret.Reveal()})
}

func (s *server) listKeys(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	keys, next, err := s.svc.KeyPage(r.Context(), page)
	if err != nil {
		return err
	}
	return writePage(w, r, keys, next)
}

func (s *server) revokeKey(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	if err := s.svc.RevokeKey(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	return noContent(w)
}

// Customers and products.

func (s *server) createCustomer(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	var c dms.Customer
	if err := decode(w, r, MaxJSONBody, &c); err != nil {
		return err
	}
	if err := s.svc.CreateCustomer(r.Context(), c); err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, c)
}

func (s *server) getCustomer(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	c, err := s.svc.Customer(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

type createProductRequest struct {
	Customer string `json:"customer"`
	jobs.Product
}

func (s *server) createProduct(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	var req createProductRequest
	if err := decode(w, r, MaxJSONBody, &req); err != nil {
		return err
	}
	if err := s.svc.CreateProduct(r.Context(), req.Customer, req.Product); err != nil {
		return err
	}
	p, err := s.svc.Product(r.Context(), req.Code)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, p)
}

func (s *server) listProducts(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	only := ""
	if p.Role == dms.RoleSupport {
		only = p.Product
	}
	products, next, err := s.svc.ProductPage(r.Context(), only, page)
	if err != nil {
		return err
	}
	return writePage(w, r, products, next)
}

func (s *server) getProduct(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	code := r.PathValue("code")
	if err := s.mayReadProduct(r.Context(), p, code); err != nil {
		return err
	}
	pi, err := s.svc.Product(r.Context(), code)
	if err != nil {
		return readErr(p, err, "product", code)
	}
	return writeJSON(w, http.StatusOK, pi)
}

// patchProductRequest changes the fields it names.
type patchProductRequest struct {
	Name       *string     `json:"name"`
	PartNumber *string     `json:"part_number"`
	Stage      *jobs.Stage `json:"stage"`
	Archived   *bool       `json:"archived"`
}

func (s *server) patchProduct(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	var req patchProductRequest
	if err := decode(w, r, MaxJSONBody, &req); err != nil {
		return err
	}
	code := r.PathValue("code")
	pi, err := s.svc.Product(r.Context(), code)
	if err != nil {
		return err
	}
	p := pi.Product
	if req.Name != nil {
		p.Name = *req.Name
	}
	if req.PartNumber != nil {
		p.PartNumber = *req.PartNumber
	}
	if req.Stage != nil {
		p.Stage = *req.Stage
	}
	if req.Archived != nil {
		p.Archived = *req.Archived
	}
	if err := s.svc.UpdateProduct(r.Context(), p); err != nil {
		return err
	}
	if pi, err = s.svc.Product(r.Context(), code); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, pi)
}

func (s *server) deleteProduct(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	if err := s.svc.DeleteProduct(r.Context(), r.PathValue("code")); err != nil {
		return err
	}
	return noContent(w)
}

// Artifacts.

var sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

func checkSum(sum string) error {
	if !sha256Pattern.MatchString(sum) {
		return apiError(http.StatusBadRequest, dmsapi.CodeInvalid,
			"an artifact is named by its sha256, 64 lowercase hexadecimal digits: %q is not one", sum)
	}
	return nil
}

// artifactURL is where the DMS serves the artifact with hash sum.
func artifactURL(sum string) string { return "/v1/artifacts/" + sum }

// uploaded is the path of the uploaded artifact sum waiting for its
// bundle.
func (s *server) uploaded(sum string) string { return filepath.Join(s.uploads, sum) }

// uploadAnswer is the answer to PUT /v1/artifacts/{sha256}.
type uploadAnswer struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// putArtifact receives an artifact's bytes, hashing them as they are
// written to the upload folder; bytes that do not hash to the path are
// refused.
func (s *server) putArtifact(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	sum := r.PathValue("sha256")
	if err := checkSum(sum); err != nil {
		return err
	}
	if r.ContentLength > s.maxArtifact {
		return apiError(http.StatusRequestEntityTooLarge, dmsapi.CodeInvalid,
			"the artifact has %d bytes; this DMS takes at most %d", r.ContentLength, s.maxArtifact)
	}
	if err := os.MkdirAll(s.uploads, 0o750); err != nil {
		return fmt.Errorf("create upload folder: %w", err)
	}
	tmp, err := os.CreateTemp(s.uploads, ".upload-*")
	if err != nil {
		return fmt.Errorf("store upload: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, removes nothing
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), http.MaxBytesReader(w, r.Body, s.maxArtifact))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return apiError(http.StatusRequestEntityTooLarge, dmsapi.CodeInvalid, "the artifact is larger than %d bytes, the most this DMS takes", mbe.Limit)
	case err != nil && r.Context().Err() == nil && !isWriteErr(err, tmp):
		return apiError(http.StatusBadRequest, dmsapi.CodeInvalid, "the upload was cut short after %d bytes: send it again", n)
	case err != nil:
		return fmt.Errorf("store upload: %w", err)
	case n == 0:
		return apiError(http.StatusUnprocessableEntity, dmsapi.CodeInvalid, "the artifact is empty: send its bytes as the body")
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return apiError(http.StatusUnprocessableEntity, dmsapi.CodeInvalid,
			"the %d bytes sent hash to %s, not %s: the file is not the one the path names, or was damaged on the way; nothing was stored", n, got, sum)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("store upload: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store upload: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.uploaded(sum)); err != nil {
		return fmt.Errorf("store upload: %w", err)
	}
	return writeJSON(w, http.StatusCreated, uploadAnswer{SHA256: sum, Size: n})
}

// isWriteErr reports whether err came from writing f rather than from
// reading the request.
func isWriteErr(err error, f *os.File) bool {
	var pe *fs.PathError
	return errors.As(err, &pe) && pe.Path == f.Name()
}

// getArtifact serves an artifact's bytes: a stored one, or (to an admin
// key) an upload waiting for its bundle. Range requests resume a
// download.
func (s *server) getArtifact(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	sum := r.PathValue("sha256")
	if err := checkSum(sum); err != nil {
		return err
	}
	if err := s.mayReadArtifact(r.Context(), p, sum); err != nil {
		return err
	}
	var content io.ReadSeeker
	data, err := s.svc.Blob(r.Context(), sum)
	switch {
	case err == nil:
		content = bytes.NewReader(data)
	case errors.Is(err, jobs.ErrNotFound) && !scoped(p):
		f, ferr := os.Open(s.uploaded(sum))
		if ferr != nil {
			return err
		}
		defer f.Close()
		content = f
	default:
		return err
	}
	h := w.Header()
	h.Set("ETag", `"`+sum+`"`)
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "private, max-age=31536000, immutable")
	http.ServeContent(w, r, "", time.Time{}, content)
	return nil
}

// readArtifact returns the bytes of the artifact sum: an upload waiting
// for its bundle, or one the DMS stores already.
func (s *server) readArtifact(r *http.Request, sum string) ([]byte, error) {
	data, err := os.ReadFile(s.uploaded(sum))
	if err == nil {
		return data, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read upload %s: %w", sum, err)
	}
	return s.svc.Blob(r.Context(), sum)
}

// Bundles.

func (s *server) createBundle(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	var b jobs.Bundle
	if err := decode(w, r, MaxJSONBody, &b); err != nil {
		return err
	}
	product := r.PathValue("code")
	files := map[string][]byte{}
	var used []string
	for i := range b.Artifacts {
		a := &b.Artifacts[i]
		if !sha256Pattern.MatchString(a.SHA256) {
			continue // the bundle's validation names it
		}
		a.URL = artifactURL(a.SHA256)
		data, err := s.readArtifact(r, a.SHA256)
		if errors.Is(err, jobs.ErrNotFound) {
			return apiError(http.StatusUnprocessableEntity, dmsapi.CodeInvalid,
				"artifacts[%d] (%s): the DMS holds no artifact with sha256 %s: upload it first with PUT %s", i, a.Name, a.SHA256, a.URL)
		} else if err != nil {
			return err
		}
		files[a.Name] = data
		used = append(used, a.SHA256)
	}
	out, err := s.svc.CreateBundle(r.Context(), product, b, files)
	if err != nil {
		return err
	}
	for _, sum := range used {
		// Stored now: the upload has done its work.
		if err := os.Remove(s.uploaded(sum)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("remove stored upload", "sha256", sum, "err", err)
		}
	}
	return writeJSON(w, http.StatusCreated, withURLs(out))
}

// withURLs points the bundle's artifacts that have no http(s) address at
// the DMS's own copy.
func withURLs(b jobs.Bundle) jobs.Bundle {
	b.Artifacts = slices.Clone(b.Artifacts)
	for i := range b.Artifacts {
		a := &b.Artifacts[i]
		if !hasScheme(a.URL) {
			a.URL = artifactURL(a.SHA256)
		}
	}
	return b
}

var schemePattern = regexp.MustCompile(`^(?i)https?://`)

func hasScheme(u string) bool { return schemePattern.MatchString(u) }

func (s *server) listBundles(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	product := r.PathValue("code")
	if err := s.mayReadProduct(r.Context(), p, product); err != nil {
		return err
	}
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	bundles, next, err := s.svc.BundlePage(r.Context(), product, page)
	if err != nil {
		return err
	}
	for i := range bundles {
		bundles[i] = withURLs(bundles[i])
	}
	return writePage(w, r, bundles, next)
}

func (s *server) getBundle(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	product := r.PathValue("code")
	if err := s.mayReadProduct(r.Context(), p, product); err != nil {
		return err
	}
	b, err := s.svc.Bundle(r.Context(), product, r.PathValue("version"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, withURLs(b))
}

// orEmpty answers an empty list as [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
