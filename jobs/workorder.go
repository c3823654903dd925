package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/station-dev/station/flasher/image"
	"github.com/station-dev/station/jobs/dupkey"
)

// Stage is a product's life-cycle stage.
type Stage string

// Product stages. A device activated to a production product is locked to
// it for good; a development product lets it be re-activated elsewhere.
const (
	StageDevelopment Stage = "development"
	StageProduction  Stage = "production"
)

// Tag marks how far a bundle has been released.
type Tag string

// Bundle tags.
const (
	TagRelease Tag = "release"
	TagBeta    Tag = "beta"
	TagAlpha   Tag = "alpha"
)

// Protocols a flasher target can name; one package under flasher/ each.
var Protocols = []string{"esp", "stm32", "gdb", "dfu", "block"}

// Formats an artifact can be stored in; flasher/image reads each of them.
var Formats = image.Formats

// Product is what a device is made into.
type Product struct {
	Code       string `json:"code"`
	Name       string `json:"name"`
	PartNumber string `json:"part_number"`
	Stage      Stage  `json:"stage"`
	Archived   bool   `json:"archived,omitempty"`
}

// Address is a flash address or block offset. In JSON it is a number or a
// string in decimal or 0x-prefixed hexadecimal. A value that cannot be read
// is kept as a problem for Validate, so that the error names its field.
type Address struct {
	n   uint64
	bad string
}

// NewAddress returns the address n.
func NewAddress(n uint64) Address { return Address{n: n} }

// Uint64 returns the address as a number.
func (a Address) Uint64() uint64 { return a.n }

// UnmarshalJSON accepts 65536, "65536" or "0x10000".
func (a *Address) UnmarshalJSON(b []byte) error {
	*a = Address{}
	if err := json.Unmarshal(b, &a.n); err == nil {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		a.bad = fmt.Sprintf("%s is not an address: write a number or a string such as \"0x10000\"", b)
		return nil
	}
	n, err := strconv.ParseUint(strings.TrimSpace(s), 0, 64)
	if err != nil {
		a.bad = fmt.Sprintf("%q is not an address: write it in decimal or 0x-prefixed hexadecimal", s)
		return nil
	}
	a.n = n
	return nil
}

// MarshalJSON writes the address as a 0x-prefixed hexadecimal string.
func (a Address) MarshalJSON() ([]byte, error) {
	return json.Marshal(fmt.Sprintf("0x%x", a.n))
}

// Artifact is one file of a bundle and where it goes.
type Artifact struct {
	// Name is the file's name, for messages and labels.
	Name string `json:"name"`
	// Target is the flasher protocol that writes it: esp, stm32, gdb,
	// dfu or block.
	Target string `json:"target"`
	// Address is where the first byte goes (flash address or offset).
	Address Address `json:"address"`
	// Size is the file's size in bytes.
	Size int64 `json:"size"`
	// SHA256 is the file's hash, 64 lowercase hexadecimal digits.
	SHA256 string `json:"sha256"`
	// Format is how the file is stored: bin, hex, elf, dfuse, img...
	Format string `json:"format"`
	// URL is where to download it: http(s), or a path relative to the
	// work order file.
	URL string `json:"url"`
}

// Bundle is one release of a product's firmware.
type Bundle struct {
	Version   string     `json:"version"`
	Tag       Tag        `json:"tag"`
	Artifacts []Artifact `json:"artifacts"`
}

// Authorization is what lets the station activate devices: an activation
// token or a purchase order, exactly one.
type Authorization struct {
	Token         Secret `json:"token,omitzero"`
	PurchaseOrder string `json:"purchase_order,omitempty"`
}

// LockPolicy says how a device is locked once activated.
type LockPolicy struct {
	// DMS records the device as locked to the product upstream. A
	// production product is always locked, whatever this says.
	DMS bool `json:"dms"`
	// Device names the device-side protections to apply, in the names the
	// backend uses (for ESP chips, espefuse's eFuse names such as
	// "JTAG_DISABLE"). Empty means none.
	Device []string `json:"device,omitempty"`
}

// LabelSpec chooses the label printed for each device.
type LabelSpec struct {
	// Template names the label template; empty means "default".
	Template string `json:"template,omitempty"`
	// Copies is how many labels to print per device; 0 means 1.
	Copies int `json:"copies,omitempty"`
}

// Duration is a time.Duration written in JSON as a string like "90s" or a
// number of seconds. A value that cannot be read is kept as a problem for
// Validate, so that the error names its field.
type Duration struct {
	d   time.Duration
	bad string
}

// NewDuration returns the duration d.
func NewDuration(d time.Duration) Duration { return Duration{d: d} }

// Std returns the duration as a time.Duration.
func (d Duration) Std() time.Duration { return d.d }

// UnmarshalJSON accepts "90s", "5m" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	*d = Duration{}
	var secs float64
	if err := json.Unmarshal(b, &secs); err == nil {
		d.d = time.Duration(secs * float64(time.Second))
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		d.bad = fmt.Sprintf("%s is not a duration: write it like \"90s\" or \"5m\"", b)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.bad = fmt.Sprintf("%q is not a duration: write it like \"90s\" or \"5m\"", s)
		return nil
	}
	d.d = v
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.d.String()) }

// FlasherSettings tune the flashing of every device of the work order.
type FlasherSettings struct {
	// Baud is the serial speed used after the bootloader handshake; 0
	// keeps the backend's default.
	Baud int `json:"baud,omitempty"`
	// NoCompress turns off compressed writes where the protocol has them.
	NoCompress bool `json:"no_compress,omitempty"`
	// Retries is how many times a failed device is tried again by itself
	// before its slot is reported failed.
	Retries int `json:"retries,omitempty"`
	// Timeouts overrides the default timeout of named steps.
	Timeouts map[string]Duration `json:"timeouts,omitempty"`
}

// WorkOrder is an administrator's instruction to make Quantity devices of
// a product with one bundle.
type WorkOrder struct {
	ID            string          `json:"id"`
	Product       Product         `json:"product"`
	Bundle        Bundle          `json:"bundle"`
	Quantity      int             `json:"quantity"`
	Authorization Authorization   `json:"authorization"`
	Lock          LockPolicy      `json:"lock"`
	Label         LabelSpec       `json:"label"`
	Flasher       FlasherSettings `json:"flasher"`
}

// FieldError is one problem with one field of a work order.
type FieldError struct {
	// Field is the JSON path of the field, e.g. "bundle.artifacts[0].sha256".
	Field string
	// Problem says what is wrong and what is expected.
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// InvalidError lists every problem found in a work order.
type InvalidError struct {
	// ID is the work order's id, if it could be read.
	ID string
	// Problems are the fields at fault, in document order.
	Problems []*FieldError
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	b.WriteString("work order")
	if e.ID != "" {
		b.WriteString(" " + e.ID)
	}
	b.WriteString(" is invalid: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.Error())
	}
	return b.String()
}

// ParseWorkOrder reads a work order from JSON and validates it. Unknown
// fields, wrong types and missing or bad values are refused with an
// *InvalidError that names every field at fault.
func ParseWorkOrder(data []byte) (WorkOrder, error) {
	wo, err := DecodeWorkOrder(data)
	if err != nil {
		return WorkOrder{}, err
	}
	if err := wo.Validate(); err != nil {
		return WorkOrder{}, err
	}
	return wo, nil
}

// DecodeWorkOrder reads a work order from JSON without validating its
// values, for callers that complete it first (a token given apart from the
// file). Syntax, type and unknown-field errors are refused as by
// ParseWorkOrder, and so is text that is not UTF-8 or holds a NUL
// (CheckJSONText), which decoding would hide, and a field given twice in
// one object.
func DecodeWorkOrder(data []byte) (WorkOrder, error) {
	var wo WorkOrder
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&wo); err != nil {
		return WorkOrder{}, &InvalidError{Problems: []*FieldError{decodeProblem(data, err)}}
	}
	if dec.More() {
		return WorkOrder{}, &InvalidError{ID: wo.ID, Problems: []*FieldError{{Field: "(document)", Problem: "has more than one JSON value; a work order file holds exactly one object"}}}
	}
	if _, err := dec.Token(); err != io.EOF {
		return WorkOrder{}, &InvalidError{ID: wo.ID, Problems: []*FieldError{{Field: "(document)", Problem: "has trailing data after the work order object"}}}
	}
	var fe *FieldError
	if errors.As(CheckJSONText(data), &fe) {
		return WorkOrder{}, &InvalidError{ID: wo.ID, Problems: []*FieldError{fe}}
	}
	var de *dupkey.Error
	if err := dupkey.Check(data); errors.As(err, &de) {
		// encoding/json keeps the last value; a reader of the file may
		// well take the first.
		return WorkOrder{}, &InvalidError{ID: wo.ID, Problems: []*FieldError{{Field: de.Path, Problem: "is given twice; give each field once"}}}
	}
	return wo, nil
}

// decodeProblem turns an encoding/json error into a FieldError.
func decodeProblem(data []byte, err error) *FieldError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		line, col := position(data, syn.Offset)
		return &FieldError{Field: "(document)", Problem: fmt.Sprintf("is not valid JSON at line %d, column %d: %v", line, col, syn)}
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(document)"
		}
		return &FieldError{Field: field, Problem: fmt.Sprintf("must be %s, not a JSON %s", kindName(typ.Type.Kind().String()), typ.Value)}
	case errors.Is(err, io.EOF):
		return &FieldError{Field: "(document)", Problem: "is empty; a work order is a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &FieldError{Field: "(document)", Problem: "ends in the middle of the JSON object; the file is cut short"}
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		name := strings.Trim(f, `"`)
		if name == "" {
			name = `""`
		}
		return &FieldError{Field: name, Problem: "is not a work order field; check its spelling"}
	}
	return &FieldError{Field: "(document)", Problem: strings.TrimPrefix(msg, "json: ")}
}

func kindName(kind string) string {
	switch kind {
	case "int", "int64", "uint", "uint64", "float64", "int32", "uint32":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice":
		return "a list"
	case "struct", "map":
		return "an object"
	}
	return "a " + kind
}

func position(data []byte, off int64) (line, col int) {
	line, col = 1, 1
	for i := int64(0); i < off && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

var (
	idPattern     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	sha256Pattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
	lockPattern   = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)
)

// MaxStepTimeout bounds a step's timeout: a 64 GB eMMC written and
// verified at 20 MB/s takes under two hours.
const MaxStepTimeout = 6 * time.Hour

// MaxQuantity bounds a work order's quantity.
const MaxQuantity = 10_000_000

// Validate checks every field and returns an *InvalidError naming each
// one at fault, or nil.
func (wo *WorkOrder) Validate() error {
	v := &InvalidError{ID: wo.ID}
	bad := func(field, format string, args ...any) {
		v.Problems = append(v.Problems, &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	switch {
	case wo.ID == "":
		bad("id", "is missing; every work order has an id such as \"WO-2026-0001\"")
	case !idPattern.MatchString(wo.ID):
		bad("id", "%q must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", wo.ID)
	}
	switch {
	case wo.Product.Code == "":
		bad("product.code", "is missing")
	case !idPattern.MatchString(wo.Product.Code):
		bad("product.code", "%q must be 1 to 64 letters, digits, '.', '_' or '-'", wo.Product.Code)
	}
	named := func(field, value string, max int) {
		switch err := CheckName(value, max); {
		case err != nil:
			bad(field, "%v", err)
		case strings.TrimSpace(value) == "":
			bad(field, "is missing")
		}
	}
	named("product.name", wo.Product.Name, MaxNameLen)
	named("product.part_number", wo.Product.PartNumber, MaxNameLen)
	if wo.Product.Stage != StageDevelopment && wo.Product.Stage != StageProduction {
		bad("product.stage", "is %q; it must be \"development\" or \"production\"", wo.Product.Stage)
	}
	named("bundle.version", wo.Bundle.Version, MaxNameLen)
	if wo.Bundle.Tag != TagRelease && wo.Bundle.Tag != TagBeta && wo.Bundle.Tag != TagAlpha {
		bad("bundle.tag", "is %q; it must be \"release\", \"beta\" or \"alpha\"", wo.Bundle.Tag)
	}
	if len(wo.Bundle.Artifacts) == 0 {
		bad("bundle.artifacts", "is empty; a bundle needs at least one artifact to flash")
	}
	names := map[string]bool{}
	for i, a := range wo.Bundle.Artifacts {
		f := fmt.Sprintf("bundle.artifacts[%d].", i)
		if err := CheckName(a.Name, MaxNameLen); err != nil {
			bad(f+"name", "%v", err)
		} else if strings.TrimSpace(a.Name) == "" {
			bad(f+"name", "is missing")
		} else if names[a.Name] {
			bad(f+"name", "%q is used by another artifact of the bundle", a.Name)
		}
		names[a.Name] = true
		if a.Address.bad != "" {
			bad(f+"address", "%s", a.Address.bad)
		}
		if !contains(Protocols, a.Target) {
			bad(f+"target", "is %q; it must be one of %s", a.Target, strings.Join(Protocols, ", "))
		}
		if a.Size <= 0 {
			bad(f+"size", "must be a positive number of bytes")
		}
		if !sha256Pattern.MatchString(a.SHA256) {
			bad(f+"sha256", "must be 64 lowercase hexadecimal digits (got %d characters)", len(a.SHA256))
		}
		if !contains(Formats, a.Format) {
			bad(f+"format", "is %q; it must be one of %s", a.Format, strings.Join(Formats, ", "))
		}
		if err := CheckName(a.URL, MaxURLLen); err != nil {
			bad(f+"url", "%v", err)
		} else if strings.TrimSpace(a.URL) == "" {
			bad(f+"url", "is missing; say where to download the artifact")
		}
	}
	switch {
	case wo.Quantity <= 0:
		bad("quantity", "must be at least 1")
	case wo.Quantity > MaxQuantity:
		bad("quantity", "must be at most %d", MaxQuantity)
	}
	hasToken, hasPO := !wo.Authorization.Token.IsZero(), wo.Authorization.PurchaseOrder != ""
	switch {
	case wo.Authorization.Token.Reveal() == Redacted:
		bad("authorization.token", "is %q, a placeholder written where a token was left out; give the real token apart from the file", Redacted)
	case hasToken && hasPO:
		bad("authorization", "names both a token and a purchase order; give exactly one")
	case !hasToken && !hasPO:
		bad("authorization", "is missing; give an activation token or a purchase order")
	}
	if err := CheckName(wo.Authorization.PurchaseOrder, MaxNameLen); err != nil {
		bad("authorization.purchase_order", "%v", err)
	}
	if err := CheckName(wo.Authorization.Token.Reveal(), MaxNameLen); err != nil {
		bad("authorization.token", "%v", err)
	}
	seen := map[string]bool{}
	for i, l := range wo.Lock.Device {
		switch {
		case !lockPattern.MatchString(l):
			bad(fmt.Sprintf("lock.device[%d]", i), "%q is not a lock name (letters, digits and '_')", l)
		case seen[l]:
			bad(fmt.Sprintf("lock.device[%d]", i), "%q is listed twice", l)
		}
		seen[l] = true
	}
	if err := CheckName(wo.Label.Template, MaxNameLen); err != nil {
		bad("label.template", "%v", err)
	}
	if wo.Label.Copies < 0 || wo.Label.Copies > 10 {
		bad("label.copies", "must be between 0 and 10")
	}
	if b := wo.Flasher.Baud; b != 0 && (b < 1200 || b > 12_000_000) {
		bad("flasher.baud", "%d is not a serial speed; use a value such as 115200 or 921600", b)
	}
	if r := wo.Flasher.Retries; r < 0 || r > 10 {
		bad("flasher.retries", "must be between 0 and 10")
	}
	for name, d := range wo.Flasher.Timeouts {
		if !contains(StepNames(), name) {
			bad("flasher.timeouts."+name, "is not a pipeline step; steps are %s", strings.Join(StepNames(), ", "))
		} else if d.bad != "" {
			bad("flasher.timeouts."+name, "%s", d.bad)
		} else if d.d <= 0 || d.d > MaxStepTimeout {
			bad("flasher.timeouts."+name, "is %v; it must be more than 0 and at most %v", d.d, MaxStepTimeout)
		}
	}
	if len(v.Problems) > 0 {
		return v
	}
	return nil
}

// LocksDMS reports whether activation also locks the device upstream.
func (wo *WorkOrder) LocksDMS() bool { return wo.Lock.DMS || wo.Product.Stage == StageProduction }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
