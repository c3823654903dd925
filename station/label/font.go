package label

import (
	"fmt"
	"image"
	"image/draw"
	"math"
	"strings"
	"sync"
	"unicode/utf8"

	xdraw "golang.org/x/image/draw"
	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/font/sfnt"
	"golang.org/x/image/math/fixed"
)

// The label's text is printed in the printer's font 0 (^A0), which Zebra
// printers ship as CG Triumvirate Bold Condensed, a Helvetica Bold
// Condensed. That font is not ours to embed, so the layout measures, and
// the PNG draws, Go Bold made to stand in for it: scaled so that its
// capitals are as tall as font 0's, and each glyph squeezed to about font
// 0's width. A condensed grotesque narrows capitals most and digits and
// punctuation least, so the squeeze goes by kind of character. The numbers
// are Helvetica Bold Condensed's advance widths summed per kind over
// ASCII, divided by Go Bold's at the same capital height (zebrash's font 0,
// the renderer behind zpl-renderer-js, is one); TestZPLRendererJS checks
// that every line lands where zpl-renderer-js prints it.
const (
	// capHeight is font 0's capital height per dot of ^A0 height.
	capHeight = 0.75
	// ellipsis ends a clipped line. Three dots, not U+2026, which a
	// printer's font may lack.
	ellipsis = "..."
)

// squeeze is the width scale that makes Go Bold's glyph r font 0's width.
func squeeze(r rune) float64 {
	switch {
	case r >= 'A' && r <= 'Z':
		return 0.785
	case r >= 'a' && r <= 'z':
		return 0.805
	case r >= '0' && r <= '9':
		return 0.866
	}
	return 0.88
}

// labelFont is Go Bold with what the layout measures it by.
type labelFont struct {
	f *opentype.Font
	// capPerEm is the height of its capital H per em.
	capPerEm float64
	// ascii holds the advance widths of ASCII, per em.
	ascii [128]float64
}

// goBold is the parsed Go Bold font. The font is compiled into the binary:
// failing to parse it is a build defect, not a run-time condition.
var goBold = sync.OnceValue(func() *labelFont {
	f, err := opentype.Parse(gobold.TTF)
	if err != nil {
		panic(fmt.Sprintf("label font: %v", err))
	}
	lf := &labelFont{f: f}
	var buf sfnt.Buffer
	upm := fixed.Int26_6(f.UnitsPerEm()) << 6
	i, err := f.GlyphIndex(&buf, 'H')
	if err != nil || i == 0 {
		panic(fmt.Sprintf("label font has no H: %v", err))
	}
	segs, err := f.LoadGlyph(&buf, i, upm, nil)
	if err != nil {
		panic(fmt.Sprintf("label font: %v", err))
	}
	hb := segs.Bounds()
	lf.capPerEm = float64(hb.Max.Y-hb.Min.Y) / float64(upm)
	for r := range lf.ascii {
		lf.ascii[r] = lf.advance(&buf, rune(r))
	}
	return lf
})

// advance returns r's advance width per em (0 for a rune the font lacks,
// as for a control character).
func (lf *labelFont) advance(buf *sfnt.Buffer, r rune) float64 {
	if r >= 0 && int(r) < len(lf.ascii) && lf.ascii[r] != 0 {
		return lf.ascii[r]
	}
	upm := fixed.Int26_6(lf.f.UnitsPerEm()) << 6
	i, err := lf.f.GlyphIndex(buf, r)
	if err != nil {
		return 0
	}
	a, err := lf.f.GlyphAdvance(buf, i, upm, font.HintingNone)
	if err != nil {
		return 0
	}
	return float64(a) / float64(upm)
}

// em returns the em size, in dots, that gives font height h.
func (lf *labelFont) em(h int) float64 { return capHeight * float64(h) / lf.capPerEm }

// face returns Go Bold at font height h (its capitals capHeight*h tall),
// unhinted so that it draws at the widths the layout measures. The caller
// closes it.
func face(h int) font.Face {
	lf := goBold()
	fc, err := opentype.NewFace(lf.f, &opentype.FaceOptions{Size: lf.em(h), DPI: 72, Hinting: font.HintingNone})
	if err != nil {
		panic(fmt.Sprintf("label font at %d dots: %v", h, err))
	}
	return fc
}

// textWidth returns the width of text at font height h, in dots, each
// glyph squeezed to font 0's width.
func textWidth(text string, h int) int {
	lf := goBold()
	var buf sfnt.Buffer
	w := 0.0
	for _, r := range text {
		w += lf.advance(&buf, r) * squeeze(r)
	}
	return int(math.Ceil(w * lf.em(h)))
}

// clip shortens text, ending it with an ellipsis, until it fits w dots at
// height h. It cuts between runes, never inside one.
func clip(text string, h, w int) string {
	if textWidth(text, h) <= w {
		return text
	}
	for text != "" {
		_, n := utf8.DecodeLastRuneInString(text)
		text = text[:len(text)-n]
		if s := strings.TrimRight(text, " ") + ellipsis; textWidth(s, h) <= w {
			return s
		}
	}
	return ""
}

// drawField draws f's text into img: its capitals' top at f.y, left-aligned
// at f.x or centred in the box, as a printer places an ^FO/^FB field. Each
// glyph is drawn at Go Bold's width and squeezed to font 0's.
func drawField(img *image.Gray, f field) error {
	if f.text == "" {
		return nil
	}
	lf := goBold()
	var buf sfnt.Buffer
	fc := face(f.h)
	defer fc.Close()
	m := fc.Metrics()
	asc, desc := m.Ascent.Ceil(), m.Descent.Ceil()
	x := float64(f.x)
	if f.center {
		x += float64(f.w-textWidth(f.text, f.h)) / 2
	}
	baseline := f.y + int(math.Round(capHeight*float64(f.h)))
	for _, r := range f.text {
		adv, s := lf.advance(&buf, r)*lf.em(f.h), squeeze(r)
		wide := image.NewAlpha(image.Rect(0, 0, int(math.Ceil(adv))+2, asc+desc))
		d := font.Drawer{Dst: wide, Src: image.Opaque, Face: fc, Dot: fixed.P(1, asc)}
		d.DrawString(string(r))
		narrow := image.NewAlpha(image.Rect(0, 0, int(math.Ceil(float64(wide.Rect.Dx())*s)), asc+desc))
		xdraw.BiLinear.Scale(narrow, narrow.Bounds(), wide, wide.Bounds(), xdraw.Src, nil)
		left := int(math.Round(x - s))
		draw.DrawMask(img, narrow.Rect.Add(image.Pt(left, baseline-asc)), image.Black, image.Point{}, narrow, image.Point{}, draw.Over)
		x += adv * s
	}
	return nil
}
