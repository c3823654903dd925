package dms

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
)

func TestDeleteProduct(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		tests := []struct {
			name  string
			setup func(t *testing.T, s *Service)
			want  error
			words string
		}{
			{
				name:  "a product with devices cannot be deleted",
				setup: func(t *testing.T, s *Service) { claimOne(t, s, "P", 1) },
				want:  ErrInUse,
				words: "product P has 1 devices and cannot be deleted: archive it instead",
			},
			{
				name: "an archived product with devices cannot be deleted either",
				setup: func(t *testing.T, s *Service) {
					claimOne(t, s, "P", 1)
					archive(t, s, "P", true)
				},
				want: ErrInUse,
			},
			{
				name:  "a product without devices is deleted with its bundles and tokens",
				setup: func(t *testing.T, s *Service) {},
			},
			{
				name: "a development product whose devices moved on can be deleted",
				setup: func(t *testing.T, s *Service) {
					claimOne(t, s, "P", 1)
					addProduct(t, s, "Q", jobs.StageDevelopment)
					_, q := addToken(t, s, "Q", 1, time.Time{})
					if _, err := s.Claim(ctx, "Q", q, hwID(1), "1.0", "s"); err != nil {
						t.Fatalf("Claim(Q) = %v", err)
					}
				},
			},
			{
				name:  "an unknown product",
				setup: func(t *testing.T, s *Service) { s.DeleteProduct(ctx, "P") },
				want:  jobs.ErrNotFound,
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, _ := newTestService(t, b)
				addProduct(t, s, "P", jobs.StageDevelopment)
				id, _ := addToken(t, s, "P", 5, time.Time{})
				tt.setup(t, s)
				err := s.DeleteProduct(ctx, "P")
				if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
					t.Fatalf("DeleteProduct(P) = %v, want %v", err, tt.want)
				}
				if err != nil && !strings.Contains(err.Error(), tt.words) {
					t.Errorf("DeleteProduct(P) = %q, want it to say %q", err, tt.words)
				}
				_, perr := s.Product(ctx, "P")
				_, terr := s.Token(ctx, id)
				gone := errors.Is(perr, jobs.ErrNotFound) && errors.Is(terr, jobs.ErrNotFound)
				if gone != (tt.want == nil || tt.want == jobs.ErrNotFound) {
					t.Errorf("after DeleteProduct(P) = %v: Product = %v, Token = %v", err, perr, terr)
				}
			})
		}
	})
}

// claimOne activates device n to product with a fresh token.
func claimOne(t *testing.T, s *Service, product string, n int) jobs.Activation {
	t.Helper()
	_, secret := addToken(t, s, product, 1, time.Time{})
	a, err := s.Claim(context.Background(), product, secret, hwID(n), "1.0", "s")
	if err != nil {
		t.Fatalf("Claim(%s, %s) = %v", product, hwID(n), err)
	}
	return a
}

func TestUpdateProduct(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		tests := []struct {
			name   string
			from   jobs.Stage
			change func(p *jobs.Product)
			want   error
		}{
			{"development to production", jobs.StageDevelopment, func(p *jobs.Product) { p.Stage = jobs.StageProduction }, nil},
			{"production to development is refused", jobs.StageProduction, func(p *jobs.Product) { p.Stage = jobs.StageDevelopment }, ErrStageChange},
			{"archive", jobs.StageProduction, func(p *jobs.Product) { p.Archived = true }, nil},
			{"rename", jobs.StageProduction, func(p *jobs.Product) { p.Name, p.PartNumber = "New name", "PN-2" }, nil},
			{"bad stage", jobs.StageDevelopment, func(p *jobs.Product) { p.Stage = "beta" }, ErrInvalid},
			{"unknown product", jobs.StageDevelopment, func(p *jobs.Product) { p.Code = "NOPE" }, jobs.ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				s, _ := newTestService(t, b)
				addProduct(t, s, "P", tt.from)
				before, _ := s.Product(ctx, "P")
				p := before.Product
				tt.change(&p)
				err := s.UpdateProduct(ctx, p)
				if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
					t.Fatalf("UpdateProduct(%+v) = %v, want %v", p, err, tt.want)
				}
				after, err := s.Product(ctx, "P")
				if err != nil {
					t.Fatalf("Product(P) = %v", err)
				}
				want := before.Product
				if tt.want == nil {
					want = p
				}
				if after.Product != want {
					t.Errorf("Product(P) = %+v, want %+v", after.Product, want)
				}
			})
		}
	})
}

func TestCreateProduct(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		if err := s.CreateCustomer(ctx, Customer{ID: "ACME", Name: "Acme Corp"}); err != nil {
			t.Fatalf("CreateCustomer = %v", err)
		}
		good := jobs.Product{Code: "THERMO", Name: "Thermostat", PartNumber: "TH-1", Stage: jobs.StageDevelopment}
		tests := []struct {
			name     string
			customer string
			p        jobs.Product
			want     error
		}{
			{"new", "ACME", good, nil},
			{"code taken", "", good, ErrExists},
			{"unknown customer", "NOPE", jobs.Product{Code: "X", Name: "X", PartNumber: "X", Stage: jobs.StageDevelopment}, jobs.ErrNotFound},
			{"bad code", "", jobs.Product{Code: "a b", Name: "X", PartNumber: "X", Stage: jobs.StageDevelopment}, ErrInvalid},
			{"no part number", "", jobs.Product{Code: "Y", Name: "Y", Stage: jobs.StageDevelopment}, ErrInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := s.CreateProduct(ctx, tt.customer, tt.p)
				if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
					t.Fatalf("CreateProduct(%q, %+v) = %v, want %v", tt.customer, tt.p, err, tt.want)
				}
			})
		}
		p, err := s.Product(ctx, "THERMO")
		if err != nil || p.Customer != "ACME" || p.Product != good {
			t.Errorf("Product(THERMO) = %+v, %v; want %+v for ACME", p, err, good)
		}
	})
}

func TestBundles(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "P", jobs.StageProduction)
		addProduct(t, s, "Q", jobs.StageProduction)
		data := image("3.0", 1000)
		tests := []struct {
			name  string
			prod  string
			b     jobs.Bundle
			files map[string][]byte
			want  error
		}{
			{
				name: "bytes give size and sha256",
				prod: "P",
				b: jobs.Bundle{Version: "3.0", Tag: jobs.TagBeta, Artifacts: []jobs.Artifact{
					{Name: "app.bin", Target: "esp", Address: jobs.NewAddress(0x10000), Format: "bin", URL: "app.bin"},
					{Name: "boot.bin", Target: "esp", Address: jobs.NewAddress(0x1000), Format: "bin", URL: "https://example.com/boot.bin", Size: 10, SHA256: strings.Repeat("ab", 32)},
				}},
				files: map[string][]byte{"app.bin": data},
			},
			{
				name:  "version taken in its product",
				prod:  "P",
				b:     jobs.Bundle{Version: "1.0", Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{{Name: "a", Target: "esp", Format: "bin", URL: "a"}}},
				files: map[string][]byte{"a": data},
				want:  ErrExists,
			},
			{
				name:  "same version in another product",
				prod:  "Q",
				b:     jobs.Bundle{Version: "3.0", Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{{Name: "a", Target: "esp", Format: "bin", URL: "a"}}},
				files: map[string][]byte{"a": data},
			},
			{
				name:  "sha256 that does not match the bytes",
				prod:  "P",
				b:     jobs.Bundle{Version: "4.0", Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{{Name: "a", Target: "esp", Format: "bin", URL: "a", SHA256: strings.Repeat("0", 64)}}},
				files: map[string][]byte{"a": data},
				want:  ErrInvalid,
			},
			{
				name:  "bytes for no artifact",
				prod:  "P",
				b:     jobs.Bundle{Version: "4.0", Tag: jobs.TagRelease, Artifacts: []jobs.Artifact{{Name: "a", Target: "esp", Format: "bin", URL: "a"}}},
				files: map[string][]byte{"a": data, "b": data},
				want:  ErrInvalid,
			},
			{
				name:  "bad tag",
				prod:  "P",
				b:     jobs.Bundle{Version: "4.0", Tag: "gold", Artifacts: []jobs.Artifact{{Name: "a", Target: "esp", Format: "bin", URL: "a"}}},
				files: map[string][]byte{"a": data},
				want:  ErrInvalid,
			},
			{
				name: "unknown product",
				prod: "NOPE",
				b:    jobs.Bundle{Version: "1.0", Tag: jobs.TagRelease},
				want: jobs.ErrNotFound,
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got, err := s.CreateBundle(ctx, tt.prod, tt.b, tt.files)
				if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
					t.Fatalf("CreateBundle(%s, %s) = %v, want %v", tt.prod, tt.b.Version, err, tt.want)
				}
				if err != nil {
					return
				}
				stored, err := s.Bundle(ctx, tt.prod, tt.b.Version)
				if err != nil {
					t.Fatalf("Bundle(%s, %s) = %v", tt.prod, tt.b.Version, err)
				}
				if len(stored.Artifacts) != len(got.Artifacts) || stored.Tag != tt.b.Tag {
					t.Fatalf("Bundle(%s, %s) = %+v, want %+v", tt.prod, tt.b.Version, stored, got)
				}
				for i, a := range stored.Artifacts {
					if a != got.Artifacts[i] {
						t.Errorf("Bundle artifact %d = %+v, want %+v", i, a, got.Artifacts[i])
					}
				}
				a := stored.Artifacts[0]
				if a.Size != int64(len(data)) || a.SHA256 != sum(data) || a.Address.Uint64() != tt.b.Artifacts[0].Address.Uint64() {
					t.Errorf("artifact = %+v, want size %d sha256 %s", a, len(data), sum(data))
				}
				blob, err := s.Blob(ctx, a.SHA256)
				if err != nil || !bytes.Equal(blob, data) {
					t.Errorf("Blob(%s) = %d bytes, %v; want the artifact's %d bytes", a.SHA256, len(blob), err, len(data))
				}
			})
		}
		bs, err := s.Bundles(ctx, "P")
		if err != nil || len(bs) != 3 || bs[0].Version != "1.0" || bs[2].Version != "3.0" {
			t.Errorf("Bundles(P) = %d bundles, %v; want 1.0, 2.0, 3.0", len(bs), err)
		}
	})
}

func TestBlob(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		tests := []struct {
			name string
			sum  string
			want error
		}{
			{"unknown", strings.Repeat("0", 64), jobs.ErrNotFound},
			{"not a sha256", "abc", ErrInvalid},
			{"upper case", strings.Repeat("A", 64), ErrInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if _, err := s.Blob(ctx, tt.sum); !errors.Is(err, tt.want) {
					t.Errorf("Blob(%s) = %v, want %v", tt.sum, err, tt.want)
				}
			})
		}
	})
}
