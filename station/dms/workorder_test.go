package dms

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/station-dev/station/jobs"
)

func TestWorkOrders(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "P", jobs.StageProduction)
		addProduct(t, s, "Q", jobs.StageProduction)
		tokP, secretP := addToken(t, s, "P", 10, time.Time{})
		tokQ, secretQ := addToken(t, s, "Q", 10, time.Time{})
		revoked, _ := addToken(t, s, "P", 10, time.Time{})
		if err := s.RevokeToken(ctx, revoked); err != nil {
			t.Fatalf("RevokeToken = %v", err)
		}
		if err := s.CreatePurchaseOrder(ctx, PurchaseOrder{ID: "PO-1", Product: "P", Quantity: 100, MinimumOrderQuantity: 50}); err != nil {
			t.Fatalf("CreatePurchaseOrder = %v", err)
		}
		spec := func(id string, change func(*WorkOrderSpec)) WorkOrderSpec {
			w := WorkOrderSpec{
				ID: id, Product: "P", Bundle: "2.0", Quantity: 50, TokenID: tokP,
				Lock:    jobs.LockPolicy{DMS: true, Device: []string{"JTAG_DISABLE"}},
				Label:   jobs.LabelSpec{Template: "small", Copies: 2},
				Flasher: jobs.FlasherSettings{Baud: 921600, Retries: 1, Timeouts: map[string]jobs.Duration{"flash": jobs.NewDuration(10 * time.Minute)}},
			}
			if change != nil {
				change(&w)
			}
			return w
		}
		tests := []struct {
			name string
			w    WorkOrderSpec
			want error
		}{
			{"by token", spec("WO-1", nil), nil},
			{"by purchase order", spec("WO-2", func(w *WorkOrderSpec) { w.TokenID, w.PurchaseOrder = "", "PO-1" }), nil},
			{"id taken", spec("WO-1", nil), ErrExists},
			{"both token and purchase order", spec("WO-3", func(w *WorkOrderSpec) { w.PurchaseOrder = "PO-1" }), ErrInvalid},
			{"no authorization", spec("WO-3", func(w *WorkOrderSpec) { w.TokenID = "" }), ErrInvalid},
			{"token of another product", spec("WO-3", func(w *WorkOrderSpec) { w.TokenID = tokQ }), jobs.ErrTokenInvalid},
			{"revoked token", spec("WO-3", func(w *WorkOrderSpec) { w.TokenID = revoked }), jobs.ErrTokenRevoked},
			{"unknown token", spec("WO-3", func(w *WorkOrderSpec) { w.TokenID = "T-99" }), jobs.ErrNotFound},
			{"unknown purchase order", spec("WO-3", func(w *WorkOrderSpec) { w.TokenID, w.PurchaseOrder = "", "PO-9" }), ErrPurchaseOrderInvalid},
			{"unknown bundle", spec("WO-3", func(w *WorkOrderSpec) { w.Bundle = "9.9" }), jobs.ErrNotFound},
			{"unknown product", spec("WO-3", func(w *WorkOrderSpec) { w.Product = "NOPE" }), jobs.ErrNotFound},
			{"bad quantity", spec("WO-3", func(w *WorkOrderSpec) { w.Quantity = 0 }), ErrInvalid},
			{"bad id", spec("WO 3", nil), ErrInvalid},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wo, err := s.CreateWorkOrder(ctx, tt.w)
				if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
					t.Fatalf("CreateWorkOrder(%+v) = %v, want %v", tt.w, err, tt.want)
				}
				if err != nil {
					return
				}
				got, err := s.WorkOrder(ctx, tt.w.ID)
				if err != nil {
					t.Fatalf("WorkOrder(%s) = %v", tt.w.ID, err)
				}
				if got.Product.Code != "P" || got.Product.Stage != jobs.StageProduction || got.Bundle.Version != "2.0" || len(got.Bundle.Artifacts) != 1 {
					t.Errorf("WorkOrder(%s) = product %+v bundle %+v, want P with bundle 2.0", tt.w.ID, got.Product, got.Bundle)
				}
				if got.Quantity != 50 || got.Label != tt.w.Label || !got.Lock.DMS || got.Lock.Device[0] != "JTAG_DISABLE" ||
					got.Flasher.Baud != 921600 || got.Flasher.Timeouts["flash"].Std() != 10*time.Minute {
					t.Errorf("WorkOrder(%s) = %+v, want the settings of %+v", tt.w.ID, got, tt.w)
				}
				if got.Authorization.PurchaseOrder != tt.w.PurchaseOrder || !got.Authorization.Token.IsZero() {
					t.Errorf("WorkOrder(%s).Authorization = %+v, want purchase order %q and no token", tt.w.ID, got.Authorization, tt.w.PurchaseOrder)
				}
				if wo.ID != got.ID || wo.Bundle.Version != got.Bundle.Version {
					t.Errorf("CreateWorkOrder = %+v, want %+v", wo, got)
				}
				stored, err := s.WorkOrderSpec(ctx, tt.w.ID)
				if err != nil || stored.TokenID != tt.w.TokenID || stored.PurchaseOrder != tt.w.PurchaseOrder {
					t.Errorf("WorkOrderSpec(%s) = %+v, %v; want token %q purchase order %q", tt.w.ID, stored, err, tt.w.TokenID, tt.w.PurchaseOrder)
				}
			})
		}

		var inv *jobs.InvalidError
		if _, err := s.CreateWorkOrder(ctx, spec("WO-4", func(w *WorkOrderSpec) { w.Quantity = -1 })); !errors.As(err, &inv) || !strings.Contains(err.Error(), "quantity: must be at least 1") {
			t.Errorf("CreateWorkOrder(quantity -1) = %v, want a *jobs.InvalidError naming quantity", err)
		}

		t.Run("authorize", func(t *testing.T) {
			cases := []struct {
				name  string
				id    string
				token jobs.Secret
				want  error
			}{
				{"the work order's token", "WO-1", secretP, nil},
				{"another product's token", "WO-1", secretQ, jobs.ErrTokenInvalid},
				{"no token", "WO-1", jobs.Secret{}, jobs.ErrTokenInvalid},
				{"purchase order takes none", "WO-2", jobs.Secret{}, nil},
				{"purchase order refuses one", "WO-2", secretP, ErrInvalid},
				{"unknown work order", "WO-9", secretP, jobs.ErrNotFound},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					wo, _ := s.WorkOrder(ctx, c.id)
					wo.ID = c.id
					err := s.AuthorizeWorkOrder(ctx, &wo, c.token)
					if c.want == nil && err != nil || !errors.Is(err, c.want) {
						t.Fatalf("AuthorizeWorkOrder(%s) = %v, want %v", c.id, err, c.want)
					}
					if err != nil {
						if strings.Contains(err.Error(), c.token.Reveal()) && !c.token.IsZero() {
							t.Errorf("AuthorizeWorkOrder(%s) = %q, holds the secret", c.id, err)
						}
						return
					}
					if err := wo.Validate(); err != nil {
						t.Errorf("authorized work order %s: Validate() = %v, want nil", c.id, err)
					}
					if wo.Authorization.Token.Reveal() != c.token.Reveal() {
						t.Errorf("authorized work order %s has token %v, want the one given", c.id, wo.Authorization.Token)
					}
				})
			}
		})
	})
}

func TestPurchaseOrders(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "DEV", jobs.StageDevelopment)
		addProduct(t, s, "Q", jobs.StageDevelopment)
		tests := []struct {
			name string
			po   PurchaseOrder
			want error
		}{
			{"new", PurchaseOrder{ID: "PO-1", Product: "DEV", Quantity: 2, MinimumOrderQuantity: 2}, nil},
			{"under the minimum order quantity", PurchaseOrder{ID: "PO-2", Product: "DEV", Quantity: 40, MinimumOrderQuantity: 100}, ErrInvalid},
			{"id taken", PurchaseOrder{ID: "PO-1", Product: "DEV", Quantity: 2}, ErrExists},
			{"unknown product", PurchaseOrder{ID: "PO-3", Product: "NOPE", Quantity: 2}, jobs.ErrNotFound},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := s.CreatePurchaseOrder(ctx, tt.po); tt.want == nil && err != nil || !errors.Is(err, tt.want) {
					t.Errorf("CreatePurchaseOrder(%+v) = %v, want %v", tt.po, err, tt.want)
				}
			})
		}

		activate := func(product, po string, n int) (jobs.Activation, error) {
			return s.Activate(ctx, jobs.ActivateRequest{Product: product, PurchaseOrder: po, HardwareID: hwID(n), FirmwareVersion: "1.0"})
		}
		steps := []struct {
			name    string
			product string
			po      string
			device  int
			want    error
			repeat  bool
		}{
			{"first device is registered and locked", "DEV", "PO-1", 1, nil, false},
			{"second device", "DEV", "PO-1", 2, nil, false},
			{"the order is filled", "DEV", "PO-1", 3, ErrPurchaseOrderFilled, false},
			{"a registered device is served again", "DEV", "PO-1", 1, nil, true},
			{"unknown order", "DEV", "PO-9", 4, ErrPurchaseOrderInvalid, false},
			{"order of another product", "Q", "PO-1", 4, ErrPurchaseOrderInvalid, false},
		}
		for _, st := range steps {
			t.Run(st.name, func(t *testing.T) {
				a, err := activate(st.product, st.po, st.device)
				if st.want == nil && err != nil || !errors.Is(err, st.want) {
					t.Fatalf("Activate(%s, %s, %s) = %v, want %v", st.product, st.po, hwID(st.device), err, st.want)
				}
				if err == nil && (!a.Locked || a.Repeat != st.repeat || a.ClaimsLeft != -1) {
					t.Errorf("Activate(%s, %s, %s) = %+v, want locked, repeat %v, claims left -1", st.product, st.po, hwID(st.device), a, st.repeat)
				}
			})
		}
		po, err := s.PurchaseOrder(ctx, "PO-1")
		if err != nil || po.Registered != 2 {
			t.Errorf("PurchaseOrder(PO-1) = %+v, %v; want 2 registered", po, err)
		}
	})
}

// TestActivateUnderWorkOrder: an activation under a work order carries
// the work order's own authorization, the token it names or its purchase
// order; any other is refused before anything is written, in words that
// name the work order's token by id and never a secret. Under no work
// order any token or purchase order of the product serves.
func TestActivateUnderWorkOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s, _ := newTestService(t, b)
		addProduct(t, s, "P", jobs.StageDevelopment)
		addProduct(t, s, "Q", jobs.StageDevelopment)
		tok1, secret1 := addToken(t, s, "P", 10, time.Time{})
		tok2, secret2 := addToken(t, s, "P", 10, time.Time{})
		tokQ, secretQ := addToken(t, s, "Q", 10, time.Time{})
		revoked, secretRevoked := addToken(t, s, "P", 10, time.Time{})
		if err := s.RevokeToken(ctx, revoked); err != nil {
			t.Fatal(err)
		}
		unknown := jobs.NewSecret(TokenPrefix + "unknownunknownunknownunknownunknownunknownunkno")
		for _, po := range []PurchaseOrder{{ID: "PO-1", Product: "P", Quantity: 10}, {ID: "PO-2", Product: "P", Quantity: 10}, {ID: "PO-Q", Product: "Q", Quantity: 10}} {
			if err := s.CreatePurchaseOrder(ctx, po); err != nil {
				t.Fatal(err)
			}
		}
		addWorkOrder(t, s, "WO-T", "P", tok1)
		if _, err := s.CreateWorkOrder(ctx, WorkOrderSpec{ID: "WO-PO", Product: "P", Bundle: "1.0", Quantity: 5, PurchaseOrder: "PO-1"}); err != nil {
			t.Fatal(err)
		}
		// Device 1 is activated under WO-T: its repeat is refused too
		// when the token is not the work order's.
		if _, err := s.Activate(ctx, jobs.ActivateRequest{WorkOrder: "WO-T", Product: "P", HardwareID: hwID(1), FirmwareVersion: "1.0", Token: secret1}); err != nil {
			t.Fatal(err)
		}

		// written is what an activation may change: the claims of every
		// token, the devices of every purchase order, every device and
		// its history.
		written := func() string {
			t.Helper()
			var b strings.Builder
			for _, id := range []string{tok1, tok2, tokQ, revoked} {
				info, err := s.Token(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "token %s used %d\n", id, info.Used)
			}
			for _, id := range []string{"PO-1", "PO-2", "PO-Q"} {
				po, err := s.PurchaseOrder(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&b, "purchase order %s registered %d\n", id, po.Registered)
			}
			for _, product := range []string{"P", "Q"} {
				devs, err := s.Devices(ctx, product)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range devs {
					full, err := s.Device(ctx, d.HardwareID)
					if err != nil {
						t.Fatal(err)
					}
					fmt.Fprintf(&b, "device %s %s locked %v history %v\n", d.HardwareID, d.Product, d.Locked, kinds(full))
				}
			}
			return b.String()
		}

		tests := []struct {
			name      string
			workOrder string
			product   string
			token     jobs.Secret
			po        string
			device    int
			want      error
			says      string // the refusal says this
		}{
			{"the work order's token", "WO-T", "P", secret1, "", 2, nil, ""},
			{"the work order's purchase order", "WO-PO", "P", jobs.Secret{}, "PO-1", 3, nil, ""},
			{"another token of the product", "WO-T", "P", secret2, "", 4, jobs.ErrTokenInvalid,
				"work order WO-T is authorized by activation token " + tok1 + "; the request carried another token"},
			{"another token, for a device served before", "WO-T", "P", secret2, "", 1, jobs.ErrTokenInvalid,
				"work order WO-T is authorized by activation token " + tok1 + "; the request carried another token"},
			{"a revoked token", "WO-T", "P", secretRevoked, "", 4, jobs.ErrTokenInvalid, "authorized by activation token " + tok1},
			{"another product's token", "WO-T", "P", secretQ, "", 4, jobs.ErrTokenInvalid, "authorized by activation token " + tok1},
			{"a token the DMS never issued", "WO-T", "P", unknown, "", 4, jobs.ErrTokenInvalid, "authorized by activation token " + tok1},
			{"a purchase order for a token's work order", "WO-T", "P", jobs.Secret{}, "PO-1", 4, jobs.ErrTokenInvalid,
				"work order WO-T is authorized by activation token " + tok1 + "; the request carried purchase order PO-1 instead"},
			{"another purchase order of the product", "WO-PO", "P", jobs.Secret{}, "PO-2", 4, ErrPurchaseOrderInvalid,
				"work order WO-PO is authorized by purchase order PO-1; the request carried purchase order PO-2"},
			{"another product's purchase order", "WO-PO", "P", jobs.Secret{}, "PO-Q", 4, ErrPurchaseOrderInvalid, "authorized by purchase order PO-1"},
			{"a token for a purchase order's work order", "WO-PO", "P", secret1, "", 4, ErrPurchaseOrderInvalid,
				"work order WO-PO is authorized by purchase order PO-1; the request carried an activation token instead"},
			{"another product than the work order's", "WO-T", "Q", secretQ, "", 4, ErrInvalid, "work order WO-T makes product P, not Q"},
			{"a work order that does not exist", "WO-NONE", "P", secret1, "", 4, jobs.ErrNotFound, "work order WO-NONE is not known"},
			{"no work order, another token", "", "P", secret2, "", 5, nil, ""},
			{"no work order, another purchase order", "", "P", jobs.Secret{}, "PO-2", 6, nil, ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				before := written()
				req := jobs.ActivateRequest{WorkOrder: tt.workOrder, Product: tt.product, HardwareID: hwID(tt.device), FirmwareVersion: "1.0",
					Token: tt.token, PurchaseOrder: tt.po, Station: "line-1"}
				_, err := s.Activate(ctx, req)
				if tt.want == nil {
					if err != nil {
						t.Fatalf("Activate(%s, %s) = %v, want success", tt.workOrder, hwID(tt.device), err)
					}
					if _, err := s.Device(ctx, hwID(tt.device)); err != nil {
						t.Errorf("Device(%s) after its activation = %v", hwID(tt.device), err)
					}
					return
				}
				if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.says) {
					t.Fatalf("Activate(%s, %s) = %v, want %v saying %q", tt.workOrder, hwID(tt.device), err, tt.want, tt.says)
				}
				for _, secret := range []jobs.Secret{secret1, secret2, secretQ, secretRevoked, unknown} {
					if strings.Contains(err.Error(), strings.TrimPrefix(secret.Reveal(), TokenPrefix)) {
						t.Errorf("Activate(%s) = %v: the refusal holds a token secret", tt.workOrder, err)
					}
				}
				if after := written(); after != before {
					t.Errorf("Activate(%s, %s) was refused but wrote:\nbefore:\n%safter:\n%s", tt.workOrder, hwID(tt.device), before, after)
				}
			})
		}
	})
}
