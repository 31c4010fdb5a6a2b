-- Personalized campaigns: instead of one template for everyone, each contact's message is chosen
-- when its batch is sent, by the pulse-content logic (an APPROVED template with parameters from
-- the contact's history, or free text inside the 24-hour window), from the campaign's brief.
-- A campaign has exactly one of the two contents.
ALTER TABLE campaigns
    ALTER COLUMN template_name DROP NOT NULL,
    ALTER COLUMN template_language DROP NOT NULL,
    ADD COLUMN brief text CHECK (length(brief) BETWEEN 1 AND 2000),
    ADD COLUMN content_language text CHECK (length(content_language) BETWEEN 1 AND 16),
    ADD CONSTRAINT campaigns_one_content CHECK (
        (template_name IS NOT NULL AND template_language IS NOT NULL AND brief IS NULL AND content_language IS NULL)
        OR (template_name IS NULL AND template_language IS NULL AND brief IS NOT NULL));
