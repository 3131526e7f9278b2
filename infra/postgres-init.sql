-- One PostgreSQL, three databases: the MLflow store, the Prefect server, Lethe's request queue.
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
