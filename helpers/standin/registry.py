"""A local stand-in for a Databricks workspace's model registry: Unity Catalog's rules over MLflow's SQLite store.

No workspace is reachable from the course's machines, so the Databricks branches of the notebooks are proven here
against the rules a Unity Catalog registry applies, enforced as far as possible by MLflow's own Unity Catalog code
(`mlflow.store._unity_catalog.registry.rest_store` and its search entities):

| rule | enforced by |
|---|---|
| `search_registered_models` takes no `filter_string` or `order_by` | MLflow's UC client (`_require_arg_unspecified`) |
| `search_model_versions` takes no `order_by` | MLflow's UC client |
| search results have no tags or aliases (reading them raises) | MLflow's UC entities, built by MLflow's UC converters |
| no stages: `get_latest_versions`, `transition_model_version_stage` raise | MLflow's UC client |
| no registry webhooks | MLflow's UC client (it has none) |
| a version's model must have a signature with inputs and outputs | MLflow's UC client (`_validate_model_signature`) |
| `search_model_versions` filters by `name = '...'` or `run_id = '...'` only | this stand-in: the workspace's server does it |
| names have three levels, `catalog.schema.model` | this stand-in: the workspace's server does it |
| versions are strings (`"1"`), as the workspace's protocol sends them | MLflow's UC converters |

MLflow finds the store through its `mlflow.model_registry_store` entry point (pyproject.toml): a registry URI
`databricks-uc-standin:///<path of an SQLite file>` selects it.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

from mlflow.entities.model_registry import ModelVersion, RegisteredModel
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_uc_registry_messages_pb2 import ModelVersion as UcModelVersion
from mlflow.protos.databricks_uc_registry_messages_pb2 import ModelVersionStatus as UcModelVersionStatus
from mlflow.protos.databricks_uc_registry_messages_pb2 import ModelVersionTag as UcVersionTag
from mlflow.protos.databricks_uc_registry_messages_pb2 import RegisteredModel as UcRegisteredModel
from mlflow.protos.databricks_uc_registry_messages_pb2 import RegisteredModelAlias as UcAlias
from mlflow.protos.databricks_uc_registry_messages_pb2 import RegisteredModelTag as UcModelTag
from mlflow.store._unity_catalog.registry.rest_store import UcModelRegistryStore, _require_arg_unspecified
from mlflow.store.entities.paged_list import PagedList
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from mlflow.utils._unity_catalog_utils import (model_version_from_uc_proto, model_version_search_from_uc_proto,
                                               registered_model_from_uc_proto, registered_model_search_from_uc_proto)

# MLflow's client treats a registry URI starting with `databricks-uc` as Unity Catalog's (no prompt filter added to
# searches), as on Databricks; only the exact `databricks-uc` would make it call a workspace.
SCHEME = "databricks-uc-standin"
UC_FILTER = re.compile(r"\s*(name|run_id)\s*=\s*'[^']*'\s*")
THREE_LEVELS = re.compile(r"[^.\s]+\.[^.\s]+\.[^.\s]+")


def registry_uri(database: Path) -> str:
    return f"{SCHEME}://{Path(database).resolve().as_posix()}"


class UnityCatalogRegistry(SqlAlchemyStore):
    """MLflow's SQLite registry, answering as a Unity Catalog registry does."""

    def __init__(self, store_uri: str, tracking_uri: str | None = None):
        if not store_uri.startswith(f"{SCHEME}://"):
            raise MlflowException(f"{store_uri!r} is not a {SCHEME}:// URI")
        super().__init__(f"sqlite:///{store_uri[len(SCHEME) + 3:]}")  # sqlite:////absolute/path
        self.tracking_uri = tracking_uri

    # Unity Catalog has no stages and no registry webhooks: MLflow's UC client raises for each of these.
    get_latest_versions = UcModelRegistryStore.get_latest_versions
    transition_model_version_stage = UcModelRegistryStore.transition_model_version_stage
    _validate_model_signature = UcModelRegistryStore._validate_model_signature
    create_webhook = UcModelRegistryStore.create_webhook
    list_webhooks = UcModelRegistryStore.list_webhooks
    list_webhooks_by_event = UcModelRegistryStore.list_webhooks_by_event

    def create_registered_model(self, name, tags=None, description=None, deployment_job_id=None):
        check_three_levels(name)
        return as_uc_model(super().create_registered_model(name, tags, description, deployment_job_id))

    def get_registered_model(self, name):
        return as_uc_model(super().get_registered_model(name))

    def update_registered_model(self, name, description=None, deployment_job_id=None):
        return as_uc_model(super().update_registered_model(name, description, deployment_job_id))

    def get_model_version(self, name, version):
        return as_uc_version(super().get_model_version(name, version))

    def get_model_version_by_alias(self, name, alias):
        return as_uc_version(super().get_model_version_by_alias(name, alias))

    def update_model_version(self, name, version, description):
        return as_uc_version(super().update_model_version(name, version, description))

    def search_registered_models(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        _require_arg_unspecified("filter_string", filter_string)
        _require_arg_unspecified("order_by", order_by)
        page = super().search_registered_models(max_results=max_results or 100, page_token=page_token)
        return PagedList([registered_model_search_from_uc_proto(uc_registered_model(model)) for model in page],
                         page.token)

    def search_model_versions(self, filter_string=None, max_results=None, order_by=None, page_token=None):
        _require_arg_unspecified(arg_name="order_by", arg_value=order_by)
        if filter_string and not UC_FILTER.fullmatch(filter_string):
            raise MlflowException(f"Unity Catalog filters model versions by one `name = '...'` or `run_id = '...'` "
                                  f"only, not {filter_string!r}.")
        page = super().search_model_versions(filter_string, max_results or 10_000, None, page_token)
        return PagedList([model_version_search_from_uc_proto(uc_model_version(version)) for version in page],
                         page.token)

    def create_model_version(self, name, source, run_id=None, tags=None, run_link=None, description=None,
                             local_model_path=None, model_id=None):
        check_three_levels(name)
        from mlflow import MlflowClient
        from mlflow.artifacts import download_artifacts

        if model_id and source.startswith("models:/"):  # MLflow 3's logged model: read it where it is stored
            source = MlflowClient(self.tracking_uri).get_logged_model(model_id).artifact_location
        with tempfile.TemporaryDirectory() as folder:
            if local_model_path:
                folder = local_model_path
            else:
                download_artifacts(artifact_uri=f"{source.rstrip('/')}/MLmodel", dst_path=folder,
                                   tracking_uri=self.tracking_uri)
            self._validate_model_signature(folder)
        return as_uc_version(super().create_model_version(name, source, run_id, tags, run_link, description,
                                                          local_model_path, model_id))


def check_three_levels(name: str) -> None:
    if not THREE_LEVELS.fullmatch(name):
        raise MlflowException(f"Model name {name!r} is not `catalog.schema.model`: Unity Catalog names a model with "
                              "three levels.")


def as_uc_model(model: RegisteredModel) -> RegisteredModel:
    """The registered model as the workspace would send it, through MLflow's converter."""
    return registered_model_from_uc_proto(uc_registered_model(model, details=True))


def as_uc_version(version: ModelVersion) -> ModelVersion:
    return model_version_from_uc_proto(uc_model_version(version, details=True))


def uc_registered_model(model: RegisteredModel, details: bool = False) -> UcRegisteredModel:
    """The model in Unity Catalog's protocol; its aliases and tags only where the workspace sends them."""
    proto = UcRegisteredModel(name=model.name, creation_timestamp=model.creation_timestamp,
                              last_updated_timestamp=model.last_updated_timestamp,
                              description=model.description or "")
    if details:
        proto.aliases.extend(UcAlias(alias=alias, version=str(version)) for alias, version in model.aliases.items())
        proto.tags.extend(UcModelTag(key=key, value=value) for key, value in model.tags.items())
    return proto


def uc_model_version(version: ModelVersion, details: bool = False) -> UcModelVersion:
    proto = UcModelVersion(name=version.name, version=str(version.version),
                           creation_timestamp=version.creation_timestamp,
                           last_updated_timestamp=version.last_updated_timestamp,
                           description=version.description or "", user_id=version.user_id or "",
                           source=version.source or "", run_id=version.run_id or "",
                           status=UcModelVersionStatus.Value(version.status),
                           status_message=version.status_message or "", model_id=version.model_id or "")
    if details:
        proto.aliases.extend(UcAlias(alias=alias, version=str(version.version)) for alias in version.aliases)
        proto.tags.extend(UcVersionTag(key=key, value=value) for key, value in version.tags.items())
    return proto

