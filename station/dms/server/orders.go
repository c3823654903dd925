package server

import (
	"net/http"
	"time"

	"github.com/station-dev/station/jobs"
	"github.com/station-dev/station/station/dms"
	"github.com/station-dev/station/station/dms/dmsapi"
)

// Work orders.

func (s *server) createWorkOrder(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	var spec dms.WorkOrderSpec
	if err := decode(w, r, MaxJSONBody, &spec); err != nil {
		return err
	}
	if _, err := s.svc.CreateWorkOrder(r.Context(), spec); err != nil {
		return err
	}
	return s.writeWorkOrder(w, r, http.StatusCreated, spec.ID)
}

// getWorkOrder answers a work order: to a support key one of its
// product, to a station key one assigned to its station (a work order
// that never listed a station is taken by the first station key that
// reads it).
func (s *server) getWorkOrder(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	id := r.PathValue("id")
	switch p.Role {
	case dms.RoleStation:
		if _, err := s.svc.StationWorkOrder(r.Context(), p.Station, id); err != nil {
			return err
		}
	case dms.RoleSupport:
		spec, err := s.svc.WorkOrderSpec(r.Context(), id)
		if err != nil {
			return readErr(p, err, "work order", id)
		}
		if err := s.mayReadOf(r.Context(), p, spec.Product, "work order", id); err != nil {
			return err
		}
	}
	return s.writeWorkOrder(w, r, http.StatusOK, id)
}

// writeWorkOrder answers the work order id as the API gives it: artifact
// URLs on the DMS, the token by id, never a secret, its stations, and
// how many devices the DMS holds as completed by it.
func (s *server) writeWorkOrder(w http.ResponseWriter, r *http.Request, status int, id string) error {
	spec, err := s.svc.WorkOrderSpec(r.Context(), id)
	if err != nil {
		return err
	}
	wo, err := s.svc.WorkOrder(r.Context(), id)
	if err != nil {
		return err
	}
	done, err := s.svc.WorkOrderDone(r.Context(), id)
	if err != nil {
		return err
	}
	wo.Bundle = withURLs(wo.Bundle)
	wo.Authorization.Token = jobs.Secret{}
	return writeJSON(w, status, dmsapi.WorkOrder{WorkOrder: wo, TokenID: spec.TokenID, Stations: spec.Stations, Done: done})
}

type assignRequest struct {
	Stations []string `json:"stations"`
}

// assignStations adds stations to a work order's list.
func (s *server) assignStations(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	var req assignRequest
	if err := decode(w, r, MaxJSONBody, &req); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := s.svc.AssignStations(r.Context(), id, req.Stations); err != nil {
		return err
	}
	return s.writeWorkOrder(w, r, http.StatusOK, id)
}

// unassignStation takes a station off a work order's list.
func (s *server) unassignStation(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	if err := s.svc.UnassignStation(r.Context(), r.PathValue("id"), r.PathValue("station")); err != nil {
		return err
	}
	return noContent(w)
}

// Activation tokens.

type createTokenRequest struct {
	MaxClaims int       `json:"max_claims"`
	Expires   time.Time `json:"expires"`
}

// createdToken is the one answer that holds a token's secret.
type createdToken struct {
	Token  dms.TokenInfo `json:"token"`
	Secret string        `json:"secret"`
}

func (s *server) createToken(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	var req createTokenRequest
	if err := decode(w, r, MaxJSONBody, &req); err != nil {
		return err
	}
	id, secret, err := s.svc.CreateToken(r.Context(), r.PathValue("code"), req.MaxClaims, req.Expires)
	if err != nil {
		return err
	}
	info, err := s.svc.Token(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, createdToken{Token: info, Secret: secret.Reveal()})
}

func (s *server) listTokens(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	product := r.PathValue("code")
	if err := s.mayReadProduct(r.Context(), p, product); err != nil {
		return err
	}
	page, err := pageOf(r)
	if err != nil {
		return err
	}
	tokens, next, err := s.svc.TokenPage(r.Context(), product, page)
	if err != nil {
		return err
	}
	return writePage(w, r, tokens, next)
}

func (s *server) getToken(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	id := r.PathValue("id")
	info, err := s.svc.Token(r.Context(), id)
	if err != nil {
		return readErr(p, err, "activation token", id)
	}
	if err := s.mayReadOf(r.Context(), p, info.Product, "activation token", id); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, info)
}

func (s *server) revokeToken(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	id := r.PathValue("id")
	if err := s.svc.RevokeToken(r.Context(), id); err != nil {
		return err
	}
	info, err := s.svc.Token(r.Context(), id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, info)
}

// Purchase orders.

type createPurchaseOrderRequest struct {
	ID       string `json:"id"`
	Product  string `json:"product"`
	Quantity int    `json:"quantity"`
	MOQ      int    `json:"moq"`
}

func (s *server) createPurchaseOrder(w http.ResponseWriter, r *http.Request, _ dms.Principal) error {
	var req createPurchaseOrderRequest
	if err := decode(w, r, MaxJSONBody, &req); err != nil {
		return err
	}
	err := s.svc.CreatePurchaseOrder(r.Context(), dms.PurchaseOrder{
		ID: req.ID, Product: req.Product, Quantity: req.Quantity, MinimumOrderQuantity: req.MOQ,
	})
	if err != nil {
		return err
	}
	po, err := s.svc.PurchaseOrder(r.Context(), req.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, po)
}

func (s *server) getPurchaseOrder(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	id := r.PathValue("id")
	po, err := s.svc.PurchaseOrder(r.Context(), id)
	if err != nil {
		return readErr(p, err, "purchase order", id)
	}
	if err := s.mayReadOf(r.Context(), p, po.Product, "purchase order", id); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, po)
}
