DROP TABLE catalogue_revision;
DROP TABLE specialist_versions;
DROP TABLE specialists;
