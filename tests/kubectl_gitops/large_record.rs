//! A namespace of thousands of objects (issue 19): its revision record stays under the API
//! server's 1 MiB object limit, and `history` reads only small heads.

use super::*;

/// Objects whose keys alone (about 280 bytes each, 4,200 of them) take more than the 1 MiB a
/// Secret may hold: the record's object list inline in `meta.json`, as it was before issue 19,
/// makes the API server refuse the record.
const OBJECTS: usize = 4_200;

/// Each with 320 hex digits that do not compress much, so that the manifests (~700 KiB
/// gzip'd) do not fit in part 0 either and continue in parts 1 and 2.
fn config_maps(changed: Option<usize>) -> String {
    let pad = "x".repeat(230);
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        (0..20)
            .map(|_| {
                // splitmix64
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                format!("{:016x}", z ^ (z >> 31))
            })
            .collect::<String>()
    };
    (0..OBJECTS)
        .map(|i| {
            let v = if Some(i) == changed { "2" } else { "1" };
            let n = noise();
            format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i:05}-{pad}\ndata:\n  v: \"{v}\"\n  noise: {n}\n")
        })
        .collect()
}

#[test]
fn a_record_of_thousands_of_objects_is_written_listed_and_reverted_to() {
    let c = cluster::cluster();
    let ns = c.fresh_namespace("large-record");
    let repo = Repo::new();
    repo.write("app/cms.yaml", config_maps(None));
    repo.tag("v1");
    repo.write("app/cms.yaml", config_maps(Some(7)));
    repo.tag("v2");
    let path = repo.path.to_str().unwrap();

    ok(sync_app(path, "v1", &ns, &[]));
    // The live ConfigMaps come in 9 pages of 500: every page is read.
    let o = ok(sync_app(path, "v2", &ns, &[]));
    let plan = format!(
        "0 to create, 1 to update, 0 to prune, {} unchanged",
        OBJECTS - 1
    );
    assert!(
        err(&o).contains(&plan) || out(&o).contains(&plan),
        "{}{}",
        out(&o),
        err(&o)
    );

    // Part 0, which `history` lists for every revision, holds the meta alone: the keys
    // compressed, no manifests.
    let head = kubectl_json(&["get", "secret", "-n", &ns, "kubectl-gitops.rev.1"]);
    let data = head["data"].as_object().unwrap();
    let bytes: usize = data.values().map(|v| v.as_str().unwrap().len()).sum();
    assert!(bytes < 128 * 1024, "part 0 holds {bytes} bytes of base64");
    assert_eq!(data["manifests.0"], "", "the manifests start in part 1");
    kubectl_json(&["get", "secret", "-n", &ns, "kubectl-gitops.rev.1.2"]);

    let h = history(&ns);
    let revisions = h["revisions"].as_array().unwrap();
    assert_eq!(revisions.len(), 2, "{h}");
    for r in revisions {
        assert_eq!(r["objects"], OBJECTS, "{r}");
        assert_eq!(r["outcome"], "succeeded", "{r}");
    }
    let status: Value =
        serde_json::from_slice(&ok(run(&["status", "-n", &ns, "-o", "json"])).stdout).unwrap();
    assert_eq!(status["revision"]["objects"], OBJECTS, "{status}");

    // Revision 1's manifests, read back from its parts, undo v2's one change.
    ok(run(&["revert", "-n", &ns, "--yes"]));
    let name = format!("c00007-{}", "x".repeat(230));
    let cm = kubectl_json(&["get", "configmap", "-n", &ns, &name]);
    assert_eq!(cm["data"]["v"], "1");
    assert_eq!(history(&ns)["revisions"][0]["objects"], OBJECTS);
}
