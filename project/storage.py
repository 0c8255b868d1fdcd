from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    """Hashed, compressed names once `collectstatic` has written its manifest
    (a production start); plain names before that, served from the apps'
    folders, so that a local run works without collecting first."""

    # The page modules import each other: rewrite those imports to hashed names too.
    support_js_module_import_aggregation = True

    def stored_name(self, name: str) -> str:
        if not self.hashed_files:
            return name
        return super().stored_name(name)
