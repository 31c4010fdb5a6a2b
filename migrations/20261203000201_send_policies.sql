-- Each tenant's send policy. A tenant without a row has the defaults: the built-in opt-out
-- keywords (STOP, UNSUBSCRIBE) and opt-in keyword (START) and nothing else. The keyword lists
-- here are added to the built-in ones (other languages: BAJA, ALTO, ARRET, ...), stored as
-- written and compared without case and surrounding white space.
CREATE TABLE send_policies (
    tenant_id          uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    opt_out_keywords   text[] NOT NULL DEFAULT '{}' CHECK (cardinality(opt_out_keywords) <= 50),
    opt_in_keywords    text[] NOT NULL DEFAULT '{}' CHECK (cardinality(opt_in_keywords) <= 50),
    updated_at         timestamptz NOT NULL DEFAULT now()
);
