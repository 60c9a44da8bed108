use super::*;

fn ok(v: Validator, s: &str) -> bool {
    v.check(s)
}

#[test]
fn iban_vectors() {
    for good in [
        "GB82 WEST 1234 5698 7654 32",
        "DE89370400440532013000",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
    ] {
        assert!(ok(Validator::Iban, good), "{good}");
    }
    for bad in [
        "GB82 WEST 1234 5698 7654 33",
        "DE89370400440532013001",
        "XX89370400440532013000",
        "GB82WEST",
        "DE00370400440532013000",
        "",
    ] {
        assert!(!ok(Validator::Iban, bad), "{bad}");
    }
}

#[test]
fn vin_vectors() {
    for good in ["1M8GDM9AXKP042788", "1HGCM82633A004352"] {
        assert!(ok(Validator::Vin, good), "{good}");
    }
    for bad in [
        "1M8GDM9A1KP042788",
        "1HGCM82643A004352",
        "1HGCM8263IA004352",
        "12345678901234567",
        "SHORT",
    ] {
        assert!(!ok(Validator::Vin, bad), "{bad}");
    }
}

#[test]
fn names_round_trip() {
    for (name, v) in NAMES {
        assert_eq!(Validator::from_name(name), Some(*v));
    }
    assert_eq!(Validator::from_name("SSN"), None);
    assert!(Validator::names().contains("phone_nanp"));
}

#[test]
fn ssn_vectors() {
    for good in [
        "536-22-1234",
        "536221234",
        "078-05-1123",
        "078.05.1123",
        "078 05 1123",
    ] {
        assert!(ok(Validator::Ssn, good), "{good}");
    }
    for bad in [
        "078051120",
        "000000000",
        "666000000",
        "666-22-1234",
        "078-05-0000",
        "078 00 1123",
        "999-22-1234",
        "987-65-4321",
        "900-12-3456",
        "123-45-6789",
        "219-09-9999",
        "457-55-5462",
        "111-11-1111",
        "53622123",
        "5362212345",
    ] {
        assert!(!ok(Validator::Ssn, bad), "{bad}");
    }
}

#[test]
fn itin_vectors() {
    for good in [
        "911-70-1234",
        "911-53-1234",
        "911-64-1234",
        "987-65-4321",
        "900-94-0000",
    ] {
        assert!(ok(Validator::Itin, good), "{good}");
    }
    for bad in [
        "911-89-1234",
        "911-93-1234",
        "911-49-1234",
        "811-70-1234",
        "911-66-1234",
    ] {
        assert!(!ok(Validator::Itin, bad), "{bad}");
    }
}

#[test]
fn luhn_vectors() {
    assert!(ok(Validator::Luhn, "79927398713"));
    assert!(ok(Validator::Luhn, "4111 1111 1111 1111"));
    assert!(!ok(Validator::Luhn, "79927398710"));
    assert!(!ok(Validator::Luhn, "0"));
    assert!(!ok(Validator::Luhn, "1234567890123456789012345"));
}

#[test]
fn card_vectors() {
    for good in [
        "6011000400000000",
        "3528000700000000",
        "4556-7375-8689-9855",
        "4556737586899855",
        "5425 2334 3010 9903",
        "2223 0000 4841 0010",
        "3782 822463 10013",
    ] {
        assert!(ok(Validator::Card, good), "{good}");
    }
    for bad in [
        // Published test PANs.
        "4111111111111111",
        "4012888888881881",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "371449635398431",
        "30569309025904",
        // Luhn failures.
        "4012-8888-8888-1882",
        "36168002586008",
        "4556737586899856",
        // Luhn-valid but no known issuer / wrong length.
        "9999999999999995",
        "1234567812345670",
        "41111111111111",
    ] {
        assert!(!ok(Validator::Card, bad), "{bad}");
    }
}

#[test]
fn npi_vectors() {
    for good in ["1234567893", "1245319599", "1003000126", "1234-567-893"] {
        assert!(ok(Validator::Npi, good), "{good}");
    }
    for bad in [
        "0234567893",
        "1111111112",
        "1234567890",
        "3234567893",
        "123456789",
    ] {
        assert!(!ok(Validator::Npi, bad), "{bad}");
    }
    // 1122334499 from the FHIR examples fails Luhn.
    assert!(!ok(Validator::Npi, "1122334499"));
}

#[test]
fn dea_vectors() {
    assert!(ok(Validator::Dea, "AB1234563"));
    assert!(ok(Validator::Dea, "B91234563"));
    assert!(!ok(Validator::Dea, "AB1234567"));
    assert!(!ok(Validator::Dea, "ZB1234563"), "Z is no registrant type");
    assert!(!ok(Validator::Dea, "A11234563"));
    assert!(!ok(Validator::Dea, "AB123456"));
    assert!(!ok(Validator::Dea, "AB12345633"));
}

#[test]
fn mbi_vectors() {
    for good in [
        "1EG4-TE5-MK73",
        "1EG4TE5MK73",
        "2AG9-XC4-NN22",
        "9XX9-XX9-XX99",
    ] {
        assert!(ok(Validator::Mbi, good), "{good}");
    }
    for bad in [
        "1SG4-TE5-MK73",
        "1EG4-LE5-MK73",
        "AEG4-TE5-MK73",
        "12G4-TE5-MK73",
        "0EG4-TE5-MK73",
        "1eg4-te5-mk73",
        "1EG4-TE5-MK7",
    ] {
        assert!(!ok(Validator::Mbi, bad), "{bad}");
    }
}

#[test]
fn aba_vectors() {
    assert!(ok(Validator::Aba, "011000015"));
    assert!(ok(Validator::Aba, "021000021"));
    assert!(!ok(Validator::Aba, "011000016"));
    assert!(!ok(Validator::Aba, "000000000"));
    assert!(
        !ok(Validator::Aba, "991000014"),
        "routing symbol 99 is not issued"
    );
}

#[test]
fn phone_vectors() {
    for good in [
        "(404) 321-7788",
        "404-321-7788",
        "+1 404 321 7788",
        "14043217788",
    ] {
        assert!(ok(Validator::PhoneNanp, good), "{good}");
    }
    for bad in [
        "212-555-0143",
        "911-321-7788",
        "123-456-7890",
        "404-121-7788",
        "404-411-7788",
        "24043217788",
        "222-222-2222",
    ] {
        assert!(!ok(Validator::PhoneNanp, bad), "{bad}");
    }
}

#[test]
fn email_vectors() {
    for good in [
        "jane.roe@synthetic-clinic.org",
        "j.doe+lab@clinic-mail.net",
        "X@a.co",
        "a@xn--80ak6aa92e.xn--p1ai",
    ] {
        assert!(ok(Validator::Email, good), "{good}");
    }
    for bad in [
        "someone@example.com",
        "someone@EXAMPLE.org",
        "a@mail.example.net",
        "a@host.example",
        "user@host.test",
        "user@x.invalid",
        "user@localhost",
        "user@box.localhost",
        ".a@b.com",
        "a..b@c.com",
        "a@-b.com",
        "a@b",
        "a@b.c",
        "a@@b.com",
        "@b.com",
    ] {
        assert!(!ok(Validator::Email, bad), "{bad}");
    }
}
