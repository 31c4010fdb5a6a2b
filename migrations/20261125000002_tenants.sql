-- One row per tenant registered by the operator (PUT /admin/tenants/{slug}).
CREATE TABLE tenants (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug             text NOT NULL UNIQUE
                     CHECK (slug ~ '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$' AND length(slug) <= 40),
    display_name     text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    -- Queue policy: deliveries before dead-letter, and jobs a tenant's workers may hold at once.
    max_attempts     integer NOT NULL DEFAULT 5 CHECK (max_attempts BETWEEN 1 AND 100),
    max_concurrency  integer NOT NULL DEFAULT 50 CHECK (max_concurrency BETWEEN 1 AND 1000),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
