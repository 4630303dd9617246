"""The code package a flow's tasks run from, and the check that the flow file is the one `create` compiled."""

import hashlib
import os
import shutil
import tempfile

from .contract import CODE_CACHE_ENV, StaleDefinitionsError
from .tasks import _flow_datastore


class CodePackage:
    """The code package of a flow (docs/deploy.md) and the check that the flow file is the one `create`
    compiled: FlowRuntime's part that finds the code its tasks run."""

    def _check_stale(self):
        path = self.flow["file"]
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            raise StaleDefinitionsError(
                "flow file %s of flow %s cannot be read (%s); regenerate the definitions with "
                "'python <flow file> dagster create'" % (path, self.flow["name"], e.strerror)
            ) from None
        if digest != self.flow["file_sha256"]:
            raise StaleDefinitionsError(
                "definitions are stale: %s changed after 'dagster create' (sha256 %s, expected %s). "
                "Regenerate them with: python %s dagster create <file>"
                % (path, digest[:12], self.flow["file_sha256"][:12], path)
            )


    def _code_package_flow_file(self, package):
        """Path of the flow file inside the extracted code ``package``, downloading it first if needed.

        The download is checked against the package's sha1 (the datastore's content key) and the flow
        file against the sha256 recorded at ``create``. Extraction goes to a private directory renamed
        into place, so concurrent processes never see a partial tree. Raises StaleDefinitionsError.
        """
        root = os.environ.get(CODE_CACHE_ENV) or os.path.join(
            os.path.expanduser("~"), ".cache", "metaflow-dagster", "code"
        )
        dest = os.path.join(root, package["sha"])
        path = os.path.join(dest, os.path.basename(self.flow["file"]))
        if not os.path.isdir(dest):
            self._extract_code_package(package, root, dest)
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            raise StaleDefinitionsError(
                "the code package %s of flow %s has no flow file %s (%s)"
                % (package["url"], self.flow["name"], os.path.basename(path), e.strerror)
            ) from None
        if digest != self.flow["file_sha256"]:
            raise StaleDefinitionsError(
                "the code package %s does not hold the flow file these definitions were compiled from "
                "(sha256 %s, expected %s); regenerate them with 'python <flow file> dagster create'"
                % (package["url"], digest[:12], self.flow["file_sha256"][:12])
            )
        return path


    def _extract_code_package(self, package, root, dest):
        import io

        from metaflow.package import MetaflowPackage

        try:
            blobs = dict(_flow_datastore(self.flow).load_data([package["sha"]], force_raw=True))
        except Exception as e:
            raise StaleDefinitionsError(
                "cannot download the code package %s of flow %s: %s" % (package["url"], self.flow["name"], e)
            ) from None
        blob = blobs.get(package["sha"])
        if blob is None or hashlib.sha1(blob).hexdigest() != package["sha"]:
            raise StaleDefinitionsError(
                "the code package %s of flow %s is missing or corrupt in the datastore"
                % (package["url"], self.flow["name"])
            )
        os.makedirs(root, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".%s-" % package["sha"], dir=root)
        try:
            MetaflowPackage.cls_extract_into(package["metadata"], io.BytesIO(blob), tmp)
            os.chmod(tmp, 0o755)
            os.rename(tmp, dest)
        except OSError:
            if not os.path.isdir(dest):  # else another process of this worker got there first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


    def _code_package_env(self, package):
        """What Metaflow records as the task's ``code-package`` metadata, so ``Task.code`` finds the package."""
        return {
            "METAFLOW_CODE_URL": package["url"],
            "METAFLOW_CODE_SHA": package["sha"],
            "METAFLOW_CODE_DS": self.flow["settings"]["datastore"],
            "METAFLOW_CODE_METADATA": package["metadata"],
        }
