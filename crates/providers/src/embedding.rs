//! Embeddings: the request every provider that embeds accepts, its answer, and the checks an
//! upstream's vectors pass before anyone sees them.

use std::time::Instant;

use core_domain::{TokenUsage, estimate_text_tokens};
use futures_util::future::BoxFuture;

use crate::ProviderError;

/// Everything a provider needs to embed texts, independent of the wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingRequest {
    /// The upstream model name.
    pub model: String,
    /// The texts, each turned into one vector, in this order.
    pub inputs: Vec<String>,
    /// The vector length to ask for (`None`: the model's own).
    pub dimensions: Option<u32>,
    /// An OpenAI-compatible server to call instead of the configured one.
    pub base_url: Option<String>,
    /// Exactly one HTTP request, as [`crate::ProviderRequest::single_attempt`].
    pub single_attempt: bool,
    /// When the whole routed call must be over, as [`crate::ProviderRequest::deadline`].
    pub deadline: Option<Instant>,
}

impl EmbeddingRequest {
    /// The inputs' estimated tokens, together (what an upstream that reports no usage is
    /// billed for, flagged as estimated).
    pub fn input_estimate(&self) -> u32 {
        self.inputs
            .iter()
            .map(|text| estimate_text_tokens(text))
            .fold(0, u32::saturating_add)
    }
}

/// An upstream's vectors, one per input in the request's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in input order, every one finite and of one length.
    pub vectors: Vec<Vec<f32>>,
    /// Input tokens (output is always 0): the upstream's count, else the inputs' estimate,
    /// flagged.
    pub usage: TokenUsage,
    /// The model that answered, as the upstream names it.
    pub model: String,
}

/// The future of an embedding call.
pub type EmbeddingFuture<'a> = BoxFuture<'a, Result<Embeddings, ProviderError>>;

/// `vectors` (each with the input index the upstream gave it, `None` for a wire that answers
/// in order) as an answer to `request`, or [`ProviderError::BadResponse`] when they are not
/// one finite vector of one length per input — a hostile or broken upstream is never passed on
/// (a vector of infinities is what an out-of-range number parses to). `usage` is billed either
/// way: the upstream did the work.
pub(crate) fn checked_vectors(
    mut vectors: Vec<(Option<usize>, Vec<f32>)>,
    request: &EmbeddingRequest,
    usage: TokenUsage,
) -> Result<Vec<Vec<f32>>, ProviderError> {
    let bad = |message: String| ProviderError::BadResponse {
        message,
        usage: Some(usage),
    };
    if vectors.len() != request.inputs.len() {
        return Err(bad(format!(
            "the upstream answered {} vector(s) for {} input(s)",
            vectors.len(),
            request.inputs.len()
        )));
    }
    if vectors.iter().any(|(index, _)| index.is_some()) {
        vectors.sort_by_key(|(index, _)| *index);
        if vectors
            .iter()
            .enumerate()
            .any(|(position, (index, _))| *index != Some(position))
        {
            return Err(bad(
                "the upstream's vectors do not have the indexes 0..n, each once".to_owned(),
            ));
        }
    }
    let length = vectors.first().map_or(0, |(_, v)| v.len());
    if length == 0 {
        return Err(bad("the upstream answered an empty vector".to_owned()));
    }
    if let Some(asked) = request.dimensions
        && usize::try_from(asked).ok() != Some(length)
    {
        return Err(bad(format!(
            "the upstream answered vectors of {length} dimensions for {asked} asked"
        )));
    }
    if vectors.iter().any(|(_, v)| v.len() != length) {
        return Err(bad(
            "the upstream's vectors are not all of one length".to_owned()
        ));
    }
    if vectors
        .iter()
        .any(|(_, v)| v.iter().any(|x| !x.is_finite()))
    {
        return Err(bad(
            "the upstream's vectors hold a number out of range".to_owned()
        ));
    }
    Ok(vectors.into_iter().map(|(_, v)| v).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(inputs: usize, dimensions: Option<u32>) -> EmbeddingRequest {
        EmbeddingRequest {
            model: "m".into(),
            inputs: (0..inputs).map(|n| format!("text {n}")).collect(),
            dimensions,
            base_url: None,
            single_attempt: false,
            deadline: None,
        }
    }

    /// Vectors as an upstream gave them, each with its index if the wire has one.
    type Given = Vec<(Option<usize>, Vec<f32>)>;

    fn check(vectors: Given, r: &EmbeddingRequest) -> Result<Vec<Vec<f32>>, String> {
        checked_vectors(vectors, r, TokenUsage::reported(3, 0)).map_err(|e| e.to_string())
    }

    #[test]
    fn vectors_come_back_in_input_order_by_their_index() {
        let r = request(3, Some(2));
        let got = check(
            vec![
                (Some(2), vec![2.0, 2.0]),
                (Some(0), vec![0.0, 0.0]),
                (Some(1), vec![1.0, 1.0]),
            ],
            &r,
        )
        .unwrap();
        assert_eq!(got, [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]);
        let in_order = check(
            vec![(None, vec![1.0]), (None, vec![2.0]), (None, vec![3.0])],
            &request(3, None),
        );
        assert_eq!(in_order.unwrap(), [[1.0], [2.0], [3.0]]);
    }

    #[test]
    fn every_broken_answer_is_refused_with_its_reason() {
        let two = request(2, None);
        let cases: [(Given, &EmbeddingRequest, &str); 6] = [
            (vec![(None, vec![1.0])], &two, "1 vector(s) for 2 input(s)"),
            (
                vec![(Some(0), vec![1.0]), (Some(0), vec![1.0])],
                &two,
                "indexes",
            ),
            (
                vec![(Some(0), vec![1.0]), (Some(5), vec![1.0])],
                &two,
                "indexes",
            ),
            (
                vec![(None, vec![1.0]), (None, vec![1.0, 2.0])],
                &two,
                "one length",
            ),
            (vec![(None, vec![]), (None, vec![])], &two, "empty vector"),
            (
                vec![(None, vec![1.0]), (None, vec![f32::INFINITY])],
                &two,
                "out of range",
            ),
        ];
        for (vectors, r, reason) in cases {
            let error = check(vectors, r).unwrap_err();
            assert!(error.contains(reason), "{error}");
        }
        let error = check(vec![(None, vec![1.0, 2.0, 3.0])], &request(1, Some(2))).unwrap_err();
        assert!(error.contains("3 dimensions for 2 asked"), "{error}");
        let billed = checked_vectors(vec![], &two, TokenUsage::reported(7, 0)).unwrap_err();
        assert!(
            matches!(billed, ProviderError::BadResponse { usage: Some(u), .. } if u.input_tokens == 7)
        );
    }

    #[test]
    fn the_input_estimate_adds_every_input() {
        let r = EmbeddingRequest {
            inputs: vec!["abcd".into(), "abcdefgh".into(), String::new()],
            ..request(0, None)
        };
        assert_eq!(r.input_estimate(), 3);
    }
}
