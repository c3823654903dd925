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
	wo, err := s.svc.CreateWorkOrder(r.Context(), spec)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, wireWorkOrder(wo, spec.TokenID))
}

func (s *server) getWorkOrder(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	id := r.PathValue("id")
	spec, err := s.svc.WorkOrderSpec(r.Context(), id)
	if err != nil {
		return err
	}
	if err := mayRead(p, spec.Product); err != nil {
		return err
	}
	wo, err := s.svc.WorkOrder(r.Context(), id)
	if err != nil {
		return err
	}
	out := wireWorkOrder(wo, spec.TokenID)
	if out.Done, err = s.svc.WorkOrderDone(r.Context(), id); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// wireWorkOrder is the work order as the API gives it: artifact URLs on
// the DMS, the token by id, never a secret.
func wireWorkOrder(wo jobs.WorkOrder, tokenID string) dmsapi.WorkOrder {
	wo.Bundle = withURLs(wo.Bundle)
	wo.Authorization.Token = jobs.Secret{}
	return dmsapi.WorkOrder{WorkOrder: wo, TokenID: tokenID}
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
	if err := mayRead(p, product); err != nil {
		return err
	}
	tokens, err := s.svc.Tokens(r.Context(), product)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, orEmpty(tokens))
}

func (s *server) getToken(w http.ResponseWriter, r *http.Request, p dms.Principal) error {
	info, err := s.svc.Token(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := mayRead(p, info.Product); err != nil {
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
	po, err := s.svc.PurchaseOrder(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := mayRead(p, po.Product); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, po)
}
