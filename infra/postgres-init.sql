-- Run once by the postgres image on an empty data volume (docker-compose.yml): the
-- database "prefect" is created from POSTGRES_DB; MLflow and Optuna get their own.
CREATE DATABASE mlflow OWNER goodbooks;
CREATE DATABASE optuna OWNER goodbooks;
