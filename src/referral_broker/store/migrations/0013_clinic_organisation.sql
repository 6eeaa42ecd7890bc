-- A clinic named as Norway names it (issue 20): its organisation number (Enhetsregisteret, nine digits
-- with a mod-11 check digit, checked by the enrolment before it gets here) and, where it has one, its
-- HER-id in Norsk Helsenett's address register. Both come from the clinic's signed enrolment file.
--
-- Clinics enrolled before this have neither, and nothing here can know them: the columns stay NULL for
-- them (shown as "not given"), and every clinic enrolled from now on has an organisation number
-- (services/enrolment.py refuses an enrolment without one).
ALTER TABLE clinics
    ADD COLUMN organisation_number text CHECK (organisation_number ~ '^[0-9]{9}$'),
    ADD COLUMN her_id text CHECK (her_id ~ '^[1-9][0-9]{0,8}$');
