"""The simulator behaves like the FHIR server features phonesync relies on."""

import httpx
import pytest

from sim.app import sheet_values_from_csv
from tests.simulator import API_KEY, simulator

NIK = "https://fhir.kemkes.go.id/id/nik"
KEY = {"x-api-key": API_KEY}


def test_search_read_and_conditional_update() -> None:
    with simulator() as sim, httpx.Client(base_url=sim.fhir, headers=KEY) as http:
        bundle = http.get("/Patient", params={"identifier": f"{NIK}|3171044203920001"}).json()
        assert (bundle["resourceType"], bundle["type"], bundle["total"]) == (
            "Bundle",
            "searchset",
            1,
        )
        patient = bundle["entry"][0]["resource"]
        assert (
            http.get("/Patient", params={"identifier": f"{NIK}|0000000000000000"}).json()["total"]
            == 0
        )
        read = http.get(f"/Patient/{patient['id']}")
        assert read.headers["etag"] == 'W/"v001"'
        stale = http.put(
            f"/Patient/{patient['id']}", json=patient, headers={"If-Match": 'W/"v000"'}
        )
        assert stale.status_code == 412
        assert stale.json()["resourceType"] == "OperationOutcome"
        ok = http.put(f"/Patient/{patient['id']}", json=patient, headers={"If-Match": 'W/"v001"'})
        assert ok.status_code == 200
        assert ok.json()["meta"]["versionId"] == "v002"
        assert ok.json()["meta"]["lastUpdated"].endswith("Z")  # UTC, as Medplum writes it
        assert ok.headers["etag"] == 'W/"v002"'
        wrong_id = http.put(f"/Patient/{patient['id']}", json={**patient, "id": "other"})
        assert wrong_id.status_code == 400
        stats = http.get(f"{sim.url}/_sim/stats").json()
        assert stats["requests"]["PUT 200"] == 1 and stats["requests"]["PUT 412"] == 1
        assert stats["puts_by_patient"] == {patient["id"]: 1}


def test_search_answers_like_medplum() -> None:
    """No fullUrl, no ``entry`` when nothing matches, identifiers matched case-insensitively,
    OperationOutcome text in ``details.text`` (tests/test_medplum.py has the real server)."""
    with simulator() as sim, httpx.Client(base_url=sim.fhir, headers=KEY) as http:
        found = http.get("/Patient", params={"identifier": f"{NIK.upper()}|3171044203920001"})
        assert [sorted(e) for e in found.json()["entry"]] == [["resource", "search"]]
        empty = http.get("/Patient", params={"identifier": f"{NIK}|0000000000000000"}).json()
        assert "entry" not in empty and empty["total"] == 0
        missing = http.get("/Patient/nobody").json()
        assert missing["issue"][0]["details"]["text"] == "no such Patient"


def test_search_pages_by_count_with_next_links_on_the_same_host() -> None:
    twins = [
        {
            "resourceType": "Patient",
            "id": f"t{n:02d}",
            "identifier": [{"system": NIK, "value": "3171044203920001"}],
        }
        for n in range(45)
    ]
    with simulator(twins) as sim, httpx.Client(headers=KEY) as http:
        url: str | None = f"{sim.fhir}/Patient?identifier={NIK}|3171044203920001"
        pages = []
        while url:
            bundle = http.get(url).json()
            pages.append([e["resource"]["id"] for e in bundle["entry"]])
            url = next((x["url"] for x in bundle["link"] if x["relation"] == "next"), None)
            assert url is None or url.startswith(sim.fhir)
        assert [len(p) for p in pages] == [20, 20, 5]  # 20 per page by default, like Medplum
        assert [pid for page in pages for pid in page] == [f"t{n:02d}" for n in range(45)]
        small = http.get(
            f"{sim.fhir}/Patient", params={"identifier": f"{NIK}|3171044203920001", "_count": 44}
        ).json()
        assert len(small["entry"]) == 44 and small["total"] == 45


def test_api_key_is_required() -> None:
    with simulator() as sim:
        assert httpx.get(f"{sim.fhir}/Patient/patient-001").status_code == 401
        assert (
            httpx.get(f"{sim.fhir}/Patient/patient-001", headers={"x-api-key": "wrong"}).status_code
            == 401
        )


def test_rate_limit_answers_429_with_retry_after() -> None:
    with simulator(rate_limit=5) as sim, httpx.Client(base_url=sim.fhir, headers=KEY) as http:
        codes = [http.get("/Patient/patient-001").status_code for _ in range(12)]
        assert codes.count(429) >= 5
        refused = http.get("/Patient/patient-001")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


def test_injected_errors_change_nothing_and_outage_toggles() -> None:
    with (
        simulator(error_rate=1.0, seed=1) as sim,
        httpx.Client(base_url=sim.fhir, headers=KEY) as http,
    ):
        assert http.put(
            "/Patient/patient-001", json={"resourceType": "Patient", "id": "patient-001"}
        ).status_code in (500, 503)
        assert sim.state.patient("patient-001")["meta"]["versionId"] == "v001"
    with simulator() as sim, httpx.Client(base_url=sim.fhir, headers=KEY) as http:
        httpx.post(f"{sim.url}/_sim/down", json={"down": True})
        assert http.get("/Patient/patient-001").status_code == 503
        httpx.post(f"{sim.url}/_sim/down", json={"down": False})
        assert http.get("/Patient/patient-001").status_code == 200


def test_bundle_endpoint_returns_patients_in_order() -> None:
    with simulator() as sim:
        bundle = httpx.get(f"{sim.url}/_sim/bundle").json()["patients_after_phone_update"]
        assert [e["resource"]["id"] for e in bundle] == [f"patient-{i:03d}" for i in range(1, 11)]


@pytest.mark.parametrize(
    ("csv_text", "values"),
    [
        ("a,b,c\n1,,\n,,\n", [["a", "b", "c"], ["1"]]),  # trailing empty cells and rows omitted
        ("a,b\n0812,3.17E+15\n", [["a", "b"], ["0812", "3.17E+15"]]),  # strings as displayed
    ],
)
def test_sheets_api_values_are_ragged_strings(csv_text: str, values: list[list[str]]) -> None:
    assert sheet_values_from_csv(csv_text) == values


def test_sheets_api_requires_a_bearer_token() -> None:
    with simulator(sheet_csv="a,b\n1,2\n") as sim:
        url = f"{sim.url}/v4/spreadsheets/sheet-1/values/Sheet1!A:Z"
        assert httpx.get(url).status_code == 401
        body = httpx.get(url, headers={"Authorization": "Bearer t"}).json()
        assert body["values"] == [["a", "b"], ["1", "2"]]


def test_batch_bundles_are_answered_as_medplum_answers_them() -> None:
    search = f"Patient?identifier={NIK}%7C3171044203920001"
    with simulator() as sim, httpx.Client(base_url=sim.fhir, headers=KEY) as http:
        patient = http.get("/Patient/patient-002").json()
        bundle = {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [
                {"request": {"method": "GET", "url": search}},
                {
                    "request": {
                        "method": "PUT",
                        "url": "Patient/patient-002",
                        "ifMatch": 'W/"v001"',
                    },
                    "resource": patient,
                },
                {
                    "request": {
                        "method": "PUT",
                        "url": "Patient/patient-003",
                        "ifMatch": 'W/"v000"',
                    },
                    "resource": {**patient, "id": "patient-003"},
                },
                {"request": {"method": "GET", "url": "Patient/nobody"}},
            ],
        }
        answer = http.post(sim.fhir, json=bundle)
        assert answer.status_code == 200
        body = answer.json()
        assert (body["resourceType"], body["type"]) == ("Bundle", "batch-response")
        statuses = [e["response"]["status"] for e in body["entry"]]
        assert statuses == ["200", "200", "412", "404"]  # bare codes, in request order
        assert all("etag" not in e["response"] for e in body["entry"])
        found, stored = body["entry"][0]["resource"], body["entry"][1]["resource"]
        assert found["type"] == "searchset" and found["entry"][0]["resource"]["id"] == "patient-001"
        assert stored["meta"]["versionId"] == "v002"
        assert body["entry"][1]["response"]["location"] == "Patient/patient-002"
        assert body["entry"][2]["response"]["outcome"]["resourceType"] == "OperationOutcome"
        # Medplum refuses a Bundle that modifies one resource twice, whole, as it does an empty one.
        twice = {**bundle, "entry": [bundle["entry"][1], bundle["entry"][1]]}
        assert http.post(sim.fhir, json=twice).status_code == 400
        assert http.post(sim.fhir, json={**bundle, "entry": []}).status_code == 400
        assert http.post(sim.fhir, json={**bundle, "type": "collection"}).status_code == 400
        assert sim.state.requests["POST 200"] == 1 and sim.state.requests["POST 400"] == 3
        assert sim.state.entries == {"GET 200": 1, "PUT 200": 1, "PUT 412": 1, "GET 404": 1}


def test_metadata_lists_batch_unless_it_is_off() -> None:
    for batch in (True, False):
        with simulator(batch=batch) as sim:
            statement = httpx.get(f"{sim.fhir}/metadata").json()
            assert statement["resourceType"] == "CapabilityStatement"
            assert statement["fhirVersion"].startswith("4.0.")
            codes = [i["code"] for r in statement["rest"] for i in r.get("interaction", [])]
            assert codes == (["batch"] if batch else [])
            answer = httpx.post(sim.fhir, headers=KEY, json={"resourceType": "Bundle"})
            assert answer.status_code == (400 if batch else 404)


def test_the_rate_limit_counts_a_bundle_once_or_by_its_entries() -> None:
    reads = {"request": {"method": "GET", "url": "Patient/patient-001"}}
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [reads] * 5}
    for by_entries, refused in ((False, 0), (True, 1)):  # 6 tokens: 5, then 5 into debt
        with simulator(rate_limit=6, rate_limit_entries=by_entries) as sim:
            codes = [httpx.post(sim.fhir, headers=KEY, json=bundle).status_code for _ in range(3)]
            assert codes.count(429) == refused
