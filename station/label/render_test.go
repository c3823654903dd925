package label

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
)

const testGTIN = "09506000134352" // valid GS1 check digit

func testLabel(template string) jobs.Label {
	return jobs.Label{Template: template, ProductName: "Thermostat T1", PartNumber: "TH-100", Serial: "THERMO-000001",
		HardwareID: "24:0a:c4:00:00:01", FirmwareVersion: "1.2.3", WorkOrder: "WO-1",
		Date: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC), Station: "st1", Slot: "A1"}
}

// needTool skips when a decoder is missing, unless CI is set.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (CI is set): install zbar-tools and dmtx-utils", name)
		}
		t.Skipf("%s is not installed: scripts/test installs it (apt-get install zbar-tools dmtx-utils)", name)
	}
	return p
}

// zbar returns the symbols zbarimg finds as "TYPE modifiers data" strings.
func zbar(t *testing.T, file string) []string {
	t.Helper()
	out, err := exec.Command(needTool(t, "zbarimg"), "--xml", "-q", file).Output()
	if err != nil {
		t.Fatalf("zbarimg %s: %v", file, err)
	}
	re := regexp.MustCompile(`<symbol type='([^']*)'([^>]*)><data><!\[CDATA\[(.*?)\]\]></data>`)
	mod := regexp.MustCompile(`modifiers='([^']*)'`)
	var got []string
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		typ := m[1]
		if mm := mod.FindStringSubmatch(m[2]); mm != nil {
			typ += " " + mm[1]
		}
		got = append(got, typ+" "+m[3])
	}
	slices.Sort(got)
	return got
}

func dmtx(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command(needTool(t, "dmtxread"), "-N1", file).Output()
	if err != nil {
		t.Fatalf("dmtxread %s: %v", file, err)
	}
	return string(out)
}

func TestPNGDecodes(t *testing.T) {
	gtinPart := testLabel(TemplateGS1)
	gtinPart.PartNumber = testGTIN
	tests := []struct {
		name     string
		r        Renderer
		l        jobs.Label
		zbar     []string // sorted
		dmtx     string   // "" means no DataMatrix expected
		zplParts []string
	}{
		{"default", Renderer{}, testLabel(""), []string{"CODE-128 THERMO-000001", "QR-Code THERMO-000001|24:0a:c4:00:00:01"}, "",
			[]string{"^BCN,80,N,N,N,N^FH^FD>:THERMO->5000001^FS", "^FO0,186^A0N,22,22^FB372,1,0,C^FH^FDTHERMO-000001^FS",
				"^BQN,2,6^FH^FDMA,THERMO-000001|24:0a:c4:00:00:01^FS"}},
		{"default by name", Renderer{}, testLabel("default"), []string{"CODE-128 THERMO-000001", "QR-Code THERMO-000001|24:0a:c4:00:00:01"}, "", nil},
		{"datamatrix", Renderer{}, testLabel("datamatrix"), []string{"CODE-128 THERMO-000001"}, "THERMO-000001|24:0a:c4:00:00:01",
			[]string{"^BXN,8,200^FH^FDTHERMO-000001|24:0a:c4:00:00:01^FS"}},
		{"gs1 GTIN part number", Renderer{}, gtinPart, []string{"CODE-128 GS1 01" + testGTIN + "21THERMO-000001"}, "THERMO-000001|24:0a:c4:00:00:01",
			[]string{"^BCN,100,N,N,N,N^FH^FD>;>801" + testGTIN + "21>6THERMO->5000001^FS", ",C^FH^FD(01)" + testGTIN + "(21)THERMO-000001^FS"}},
		{"gs1 configured GTIN", Renderer{GTIN: "00012345600012"}, testLabel("gs1"), []string{"CODE-128 GS1 010001234560001221THERMO-000001"}, "THERMO-000001|24:0a:c4:00:00:01", nil},
	}
	dir := t.TempDir()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.r.PNG(tc.l)
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil || img.Bounds().Dx() != Width || img.Bounds().Dy() != Height {
				t.Fatalf("PNG is not a %dx%d image: %v", Width, Height, err)
			}
			file := filepath.Join(dir, strings.Repeat("x", i+1)+".png")
			if err := os.WriteFile(file, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if got := zbar(t, file); !slices.Equal(got, tc.zbar) {
				t.Errorf("zbarimg = %q, want %q", got, tc.zbar)
			}
			if tc.dmtx != "" {
				if got := dmtx(t, file); got != tc.dmtx {
					t.Errorf("dmtxread = %q, want %q", got, tc.dmtx)
				}
			}
			z, err := tc.r.ZPL(tc.l)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.zplParts {
				if !strings.Contains(string(z), p) {
					t.Errorf("ZPL lacks %q:\n%s", p, z)
				}
			}
		})
	}
}

func TestRenderRefuses(t *testing.T) {
	long := testLabel("")
	long.Serial = strings.Repeat("X", 60)
	badGS1 := testLabel("gs1")
	badGS1.PartNumber = "09506000134353" // wrong check digit
	tests := []struct {
		name string
		r    Renderer
		l    jobs.Label
		want string
	}{
		{"unknown template", Renderer{}, testLabel("fancy"), `unknown label template "fancy"`},
		{"gs1 without GTIN", Renderer{}, testLabel("gs1"), "not a 14-digit GTIN"},
		{"gs1 bad check digit", Renderer{}, badGS1, "not a 14-digit GTIN"},
		{"gs1 bad serial", Renderer{GTIN: testGTIN}, func() jobs.Label { l := testLabel("gs1"); l.Serial = "A B"; return l }(), "AI (21)"},
		{"no serial", Renderer{}, func() jobs.Label { l := testLabel(""); l.Serial = ""; return l }(), "no serial"},
		{"serial too long", Renderer{}, long, "too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.r.ZPL(tc.l); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ZPL error = %v, want %q", err, tc.want)
			}
			if _, err := tc.r.PNG(tc.l); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("PNG error = %v, want %q", err, tc.want)
			}
			if z := ZPL(tc.l); z != nil && tc.r == (Renderer{}) {
				t.Errorf("ZPL() = %q, want nil", z)
			}
		})
	}
	if err := CheckTemplate("datamatrix"); err != nil {
		t.Errorf("CheckTemplate(datamatrix) = %v", err)
	}
}

func TestZPLInjectionInEveryField(t *testing.T) {
	evil := "A^XZ^XA~JR\n^XA_"
	for _, tpl := range []string{"", "datamatrix"} {
		l := testLabel(tpl)
		l.Serial, l.ProductName, l.WorkOrder, l.HardwareID = evil, evil, evil, "~JR^XZ"
		l.Copies = 3
		z, err := Renderer{}.ZPL(l)
		if err != nil {
			t.Fatal(err)
		}
		s := string(z)
		// Commands are ^ or ~ followed by two letters; count the real ones.
		if n := strings.Count(s, "^XA"); n != 1 || !strings.HasPrefix(s, "^XA\n") {
			t.Errorf("template %q: %d ^XA, want 1 at the start:\n%s", tpl, n, s)
		}
		if n := strings.Count(s, "^XZ"); n != 1 || !strings.HasSuffix(s, "^XZ\n") {
			t.Errorf("template %q: %d ^XZ, want 1 at the end:\n%s", tpl, n, s)
		}
		if strings.Contains(s, "~") {
			t.Errorf("template %q: a ~ command got through:\n%s", tpl, s)
		}
		for _, want := range []string{"A_5EXZ_5EXA_7EJR_0A_5EXA_5F", "_7EJR_5EXZ", "^PQ3\n"} {
			if !strings.Contains(s, want) {
				t.Errorf("template %q: ZPL lacks %q:\n%s", tpl, want, s)
			}
		}
		// Every field data is preceded by ^FH, so the escapes are decoded.
		if strings.Count(s, "^FD") != strings.Count(s, "^FH^FD") {
			t.Errorf("template %q: a ^FD without ^FH:\n%s", tpl, s)
		}
	}
}

func TestDirSinkWritesZPLAndPNG(t *testing.T) {
	dir := t.TempDir()
	s := &DirSink{Dir: dir}
	if err := s.Print(context.Background(), testLabel("datamatrix")); err != nil {
		t.Fatal(err)
	}
	// The preview is drawn behind the print.
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	z, err := os.ReadFile(filepath.Join(dir, "THERMO-000001.zpl"))
	if err != nil || !bytes.Equal(z, ZPL(testLabel("datamatrix"))) {
		t.Errorf("zpl file = %q, %v", z, err)
	}
	if got := dmtx(t, filepath.Join(dir, "THERMO-000001.png")); got != "THERMO-000001|24:0a:c4:00:00:01" {
		t.Errorf("png file decodes to %q", got)
	}
	if err := s.Print(context.Background(), testLabel("nope")); err == nil {
		t.Error("DirSink printed an unknown template")
	}
}

// TestPreviewIsThePrint: ZPL and PNG draw the one layout. For serials of 8
// to 32 characters and a product name too long for its line, the ZPL holds
// the layout's fields and the barcode's code sets, the PNG's bars span the
// layout's width, its text stays in the layout's boxes, and the Code 128
// decodes.
func TestPreviewIsThePrint(t *testing.T) {
	long := "Industrial Humidity and Temperature Controller with Remote Sensor"
	tests := []struct {
		serial, product string
		barFD           string // ^BC field data
		barDots         int
		nameH           int
		name            string
	}{
		{"THERMO01", "", ">:THERMO01", 246, 38, "Thermostat T1"},
		{"THERMO-000001", "", ">:THERMO->5000001", 312, 38, "Thermostat T1"},
		{"THERMO-00000000000000001", "", ">:THERMO-0>50000000000000001", 444, 38, "Thermostat T1"},
		{"TH-0000000000000000000000000001X", "", ">:TH->50000000000000000000000000001>6X", 510, 38, "Thermostat T1"},
		{"THERMO01", long, ">:THERMO01", 246, 26, "Industrial Humidity and Temperature Control..."},
	}
	dir := t.TempDir()
	for i, tc := range tests {
		t.Run(tc.serial, func(t *testing.T) {
			l := testLabel("")
			l.Serial = tc.serial
			if tc.product != "" {
				l.ProductName = tc.product
			}
			lo, err := Renderer{}.layout(l)
			if err != nil {
				t.Fatal(err)
			}
			if got := lo.bar.ZPL(); got != tc.barFD || lo.barWidth() != tc.barDots {
				t.Errorf("barcode = %q, %d dots; want %q, %d dots", got, lo.barWidth(), tc.barFD, tc.barDots)
			}
			if f := lo.fields[0]; f.h != tc.nameH || f.text != tc.name {
				t.Errorf("product name = %q at %d dots, want %q at %d", f.text, f.h, tc.name, tc.nameH)
			}
			z, err := Renderer{}.ZPL(l)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{fmt.Sprintf("^FO%d,%d^BY2^BCN,%d,N,N,N,N^FH^FD%s^FS", barX, lo.barY, lo.barHeight, Escape(tc.barFD))}
			for _, f := range append(lo.fields, lo.human) {
				if w := textWidth(f.text, f.h); w > f.w {
					t.Errorf("%q is %d dots wide at %d, its box %d", f.text, w, f.h, f.w)
				}
				s := fmt.Sprintf("^FO%d,%d^A0N,%d,%d", f.x, f.y, f.h, f.h)
				if f.center {
					s += fmt.Sprintf("^FB%d,1,0,C", f.w)
				}
				want = append(want, s+"^FH^FD"+Escape(f.text)+"^FS\n")
			}
			for _, w := range want {
				if !strings.Contains(string(z), w) {
					t.Errorf("ZPL lacks %q:\n%s", w, z)
				}
			}
			b, err := Renderer{}.PNG(l)
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(dir, fmt.Sprintf("%d.png", i))
			if err := os.WriteFile(file, b, 0o644); err != nil {
				t.Fatal(err)
			}
			img := readGray(t, file)
			if first, last := darkRun(img, lo.barY+lo.barHeight/2, codeX); first != barX || last != barX+tc.barDots-1 {
				t.Errorf("PNG bars span x %d..%d, want %d..%d", first, last, barX, barX+tc.barDots-1)
			}
			for _, f := range append(lo.fields, lo.human) {
				box := ink(img, image.Rect(0, f.y-4, codeX, f.y+f.h+2))
				if box.Min.X < f.x || box.Max.X > f.x+f.w {
					t.Errorf("%q inks x %d..%d, outside its box %d..%d", f.text, box.Min.X, box.Max.X, f.x, f.x+f.w)
				}
			}
			if got := zbar(t, file); !slices.Contains(got, "CODE-128 "+tc.serial) {
				t.Errorf("zbarimg = %q, want the serial's Code 128", got)
			}
		})
	}
}
