//! The trace reader on arbitrary input: an answer (a trace or an error that
//! names the file), never a panic.

use k3scale_sim::trace::Trace;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_give_a_trace_or_an_error_naming_the_file(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        if let Err(e) = Trace::read("r.csv", &bytes) {
            prop_assert!(e.to_string().starts_with("r.csv"), "{e}");
        }
    }

    #[test]
    fn csv_like_text_gives_a_trace_or_an_error_naming_the_file(
        text in "(time_s|workload|cpu|requests|replicas|\"|,|#|\\.|-|[0-9]{1,12}|\r?\n| |\u{feff}|x){0,80}"
    ) {
        match Trace::parse("t.csv", &text) {
            Ok(t) => prop_assert!(t.series.values().all(|p| p.windows(2).all(|w| w[0].0 < w[1].0))),
            Err(e) => prop_assert!(e.to_string().starts_with("t.csv"), "{e}"),
        }
    }
}
