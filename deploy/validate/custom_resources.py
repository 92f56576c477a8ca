"""Checks rendered manifests: each custom resource against its CRD's schema, as
published (a folder of CRD files, never copied into the repository), and the
core objects written to a file of their own for kubernetes-validate.

    custom_resources.py RENDERED CRD_DIR CORE_OUT

The CRD schemas are made strict the way the API server's strict field
validation is: an object schema that lists its properties refuses any other
(a misspelt field is an error, not silently pruned).
"""

import pathlib
import sys

import jsonschema
import yaml


def strict(schema):
    """The openAPIV3Schema as JSON Schema that refuses unknown fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: strict(value) for key, value in schema.items()}
    if converted.pop("nullable", False) and "type" in converted:
        converted["type"] = [converted["type"], "null"]
    preserve = converted.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in converted and "additionalProperties" not in converted and not preserve:
        converted["additionalProperties"] = False
    return converted


def load_crds(folder):
    """{(apiVersion, kind): schema} for every served version of every CRD."""
    schemas = {}
    for path in sorted(pathlib.Path(folder).rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if not document or document.get("kind") != "CustomResourceDefinition":
                continue
            spec = document["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                schema = strict(version["schema"]["openAPIV3Schema"])
                # metadata is checked by the API server, not the CRD.
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                api_version = f"{spec['group']}/{version['name']}"
                schemas[(api_version, spec["names"]["kind"])] = schema
    return schemas


def main(rendered, crd_folder, core_out):
    schemas = load_crds(crd_folder)
    if not schemas:
        sys.exit(f"no CRDs found in {crd_folder}")
    documents = [d for d in yaml.safe_load_all(pathlib.Path(rendered).read_text()) if d]
    core, errors, seen, checked = [], [], set(), 0
    for document in documents:
        key = (document.get("apiVersion", ""), document.get("kind", ""))
        name = document.get("metadata", {}).get("name", "?")
        if (key, name) in seen:
            errors.append(f"{key[1]}/{name}: defined twice")
        seen.add((key, name))
        group = key[0].split("/")[0] if "/" in key[0] else ""
        if "." not in group or group.endswith(".k8s.io") and not group.startswith("gateway."):
            core.append(document)
            continue
        schema = schemas.get(key)
        if schema is None:
            errors.append(f"{key[1]}/{name}: no CRD for {key[0]} {key[1]} in {crd_folder}")
            continue
        validator = jsonschema.Draft7Validator(schema)
        for error in sorted(validator.iter_errors(document), key=lambda e: list(e.path)):
            path = ".".join(str(part) for part in error.path) or "(root)"
            errors.append(f"{key[1]}/{name}: {path}: {error.message}")
        checked += 1
    pathlib.Path(core_out).write_text(yaml.safe_dump_all(core, sort_keys=False))
    for error in errors:
        print(f"  FAIL {error}")
    regions = {}
    for document in documents:
        labels = document.get("metadata", {}).get("labels") or {}
        region = labels.get("harvest.io/region", "(shared)")
        regions[region] = regions.get(region, 0) + 1
    print(f"rendered: {len(documents)} objects; per region: "
          + ", ".join(f"{region} {count}" for region, count in sorted(regions.items())))
    print(f"custom resources: {checked} checked against their CRDs, {len(errors)} failed; "
          f"{len(core)} core objects passed on to kubernetes-validate")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
