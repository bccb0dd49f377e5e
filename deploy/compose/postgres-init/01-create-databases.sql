-- docker-compose.yml: one read-model database per service, owned by the compose user
-- (POSTGRES_USER). The postgres image runs this once, when its data volume is empty.
CREATE DATABASE identity;
CREATE DATABASE departments;
CREATE DATABASE tickets;
CREATE DATABASE clients;
CREATE DATABASE notifier;
