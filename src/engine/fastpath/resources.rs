//! Which FHIR resource each value of a plain JSON body belongs to, the way the structural walk
//! (`carrier::json::Walker`) addresses it: a value's `fhir:` address starts with the type of
//! its innermost enclosing object that has a valid `resourceType`, the first member named
//! `resourceType` whose value is a string of 1 to 64 ASCII letters and digits (arrays are
//! transparent, `contained` and `entry.resource` restart the path).
//!
//! Used by the whole-body clean check for a structural rule whose hotword does occur but whose
//! exception covers whole resource types (the NPI rule and `fhir:Practitioner.*`): candidate
//! values inside such a resource are dropped before the rule's patterns run over the rest.
//! Anything this is not sure of (a key, an object with two `resourceType` members, a token it
//! did not record) has no resource, so it stays a candidate: the answer can only keep a rule
//! alive, never hide a value.
//!
//! The one pass (`profile`) builds the objects as it reads the body ([`Objects`]); it used to
//! be a second pass of its own ([`Resources::of`], kept as the tests' reference), a tenth of a
//! clean EHR Bundle's scan.

/// The resource state of one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    /// No `resourceType` member (yet).
    None,
    /// A valid `resourceType`: the byte range of its value.
    Typed(u32, u32),
    /// Two `resourceType` members, or a first one the walker might read differently: the
    /// object's values count as of no known resource.
    Ambiguous,
}

/// The objects of a body and their resource states, built by the one pass as it reads them;
/// each value token records its innermost object ([`super::Tok::obj`]).
#[derive(Debug, Default)]
pub(crate) struct Objects {
    /// Per object, in opening order: its parent object (`u32::MAX` at the top) and state.
    objects: Vec<(u32, Ty)>,
    /// More than [`MAX_OBJECTS`] objects: nothing is known.
    overflow: bool,
}

impl Objects {
    /// A `{` inside object `parent` (`u32::MAX`: none): the new object's id (`u32::MAX` past
    /// the limit).
    pub(super) fn open(&mut self, parent: u32) -> u32 {
        let Ok(id) = u32::try_from(self.objects.len()) else {
            self.overflow = true;
            return u32::MAX;
        };
        if self.objects.len() >= MAX_OBJECTS {
            self.overflow = true;
            return u32::MAX;
        }
        self.objects.push((parent, Ty::None));
        id
    }

    /// The key `resourceType` in object `obj`: the object whose type the member's value
    /// gives (see [`Objects::type_value`]), if it has none yet.
    pub(super) fn type_key(&mut self, obj: u32) -> Option<u32> {
        let slot = self.objects.get_mut(obj as usize)?;
        match slot.1 {
            Ty::None => Some(obj),
            // The walker takes the first valid one; a second makes the object ambiguous here
            // whatever its value.
            _ => {
                slot.1 = Ty::Ambiguous;
                None
            }
        }
    }

    /// The value of object `obj`'s `resourceType` member: a string `start..end` as written,
    /// or (`None`) a number or literal.
    pub(super) fn type_value(&mut self, obj: u32, string: Option<(usize, usize, &[u8])>) {
        if let Some(slot) = self.objects.get_mut(obj as usize) {
            let typed = string.and_then(|(s, e, raw)| {
                let range = (u32::try_from(s).ok()?, u32::try_from(e).ok()?);
                safe_name(raw).then_some(range)
            });
            slot.1 = match typed {
                Some((s, e)) if slot.1 == Ty::None => Ty::Typed(s, e),
                // Not a name the walker accepts (a number, a literal, an escape): it would
                // look at later members; rather than follow it, know nothing.
                _ => Ty::Ambiguous,
            };
        }
    }

    /// The resource type of a value token whose innermost object is `obj` (`u32::MAX`: none,
    /// or not a recorded value), or `None` when this is not sure of one.
    pub(crate) fn resource_of<'t>(&self, text: &'t str, obj: u32) -> Option<&'t str> {
        if self.overflow {
            return None;
        }
        let mut o = obj;
        while let Some(&(parent, ty)) = self.objects.get(o as usize) {
            match ty {
                Ty::Typed(s, e) => return text.get(s as usize..e as usize),
                Ty::Ambiguous => return None,
                Ty::None => o = parent,
            }
        }
        None
    }
}

/// The objects of a body and the innermost object of each value token, found by a pass of its
/// own: the reference [`Objects`] is tested against.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Resources<'t> {
    text: &'t str,
    /// Per object, in opening order: its parent object (`u32::MAX` at the top) and state.
    objects: Vec<(u32, Ty)>,
    /// Value tokens (strings that are not keys, and numbers) by start offset, in order, each
    /// with its innermost object (`u32::MAX`: none).
    values: Vec<(u32, u32)>,
}

/// Most objects [`Objects`] records; in a larger body no value has a resource.
const MAX_OBJECTS: usize = 1 << 20;

#[cfg(test)]
impl<'t> Resources<'t> {
    /// One pass over `text`, which must be the ASCII, valid JSON the one-pass profile accepted
    /// (this pass re-checks only what it relies on). `None` when anything is unexpected. A
    /// string with escapes is a value like any other; its pieces (tokens that start inside it)
    /// are not recorded values, so they have no resource.
    pub(crate) fn of(text: &'t str) -> Option<Resources<'t>> {
        let b = text.as_bytes();
        let mut objects: Vec<(u32, Ty)> = Vec::new();
        let mut values: Vec<(u32, u32)> = Vec::new();
        // Open containers: `Some(object index)` or `None` for an array.
        let mut stack: Vec<Option<u32>> = Vec::new();
        // Whether the next string in the current object is a key.
        let mut key_next = false;
        // Set after the key `resourceType`: the object whose member value comes next.
        let mut rt_member: Option<u32> = None;
        let innermost = |stack: &[Option<u32>]| stack.iter().rev().find_map(|o| *o);
        let mut i = 0usize;
        while let Some(&c) = b.get(i) {
            match c {
                b'{' => {
                    if objects.len() >= MAX_OBJECTS {
                        return None;
                    }
                    let parent = innermost(&stack).unwrap_or(u32::MAX);
                    let id = u32::try_from(objects.len()).ok()?;
                    objects.push((parent, Ty::None));
                    stack.push(Some(id));
                    key_next = true;
                    rt_member = None;
                    i += 1;
                }
                b'[' => {
                    stack.push(None);
                    key_next = false;
                    rt_member = None;
                    i += 1;
                }
                b'}' | b']' => {
                    stack.pop()?;
                    key_next = false;
                    rt_member = None;
                    i += 1;
                }
                b',' => {
                    key_next = matches!(stack.last(), Some(Some(_)));
                    rt_member = None;
                    i += 1;
                }
                b'"' => {
                    let start = i + 1;
                    let end = string_end(b, start)?;
                    let tok = b.get(start..end)?;
                    let obj = innermost(&stack);
                    if key_next {
                        key_next = false;
                        if tok == b"resourceType" {
                            let o = obj?;
                            let slot = objects.get_mut(o as usize)?;
                            match slot.1 {
                                // The walker takes the first valid one; a second makes the
                                // object ambiguous here whatever its value.
                                Ty::None => rt_member = Some(o),
                                _ => slot.1 = Ty::Ambiguous,
                            }
                        }
                    } else {
                        values.push((u32::try_from(start).ok()?, obj.unwrap_or(u32::MAX)));
                        if let Some(o) = rt_member.take() {
                            let slot = objects.get_mut(o as usize)?;
                            if slot.1 == Ty::None && safe_name(tok) {
                                slot.1 =
                                    Ty::Typed(u32::try_from(start).ok()?, u32::try_from(end).ok()?);
                            } else {
                                // Not a name the walker accepts: it would look at later
                                // members; rather than follow it, know nothing.
                                slot.1 = Ty::Ambiguous;
                            }
                        }
                    }
                    i = end + 1;
                }
                b' ' | b'\t' | b'\n' | b'\r' | b':' => i += 1,
                _ => {
                    // A number or a literal: a value. A `resourceType` with such a value is
                    // skipped by the walker, which then looks at later members.
                    if let Some(o) = rt_member.take() {
                        if let Some(slot) = objects.get_mut(o as usize) {
                            slot.1 = Ty::Ambiguous;
                        }
                    }
                    let start = i;
                    while b.get(i).is_some_and(|c| {
                        !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                    }) {
                        i += 1;
                    }
                    if i == start {
                        return None;
                    }
                    let obj = innermost(&stack);
                    values.push((u32::try_from(start).ok()?, obj.unwrap_or(u32::MAX)));
                }
            }
        }
        if !stack.is_empty() {
            return None;
        }
        Some(Resources {
            text,
            objects,
            values,
        })
    }

    /// The resource type of the value token starting at byte `start`, or `None` when the
    /// token is not a recorded value or has no resource this pass is sure of.
    pub(crate) fn resource_of(&self, start: u32) -> Option<&'t str> {
        let at = self.values.binary_search_by_key(&start, |v| v.0).ok()?;
        let mut o = self.values.get(at)?.1;
        while let Some(&(parent, ty)) = self.objects.get(o as usize) {
            match ty {
                Ty::Typed(s, e) => return self.text.get(s as usize..e as usize),
                Ty::Ambiguous => return None,
                Ty::None => o = parent,
            }
        }
        None
    }
}

/// The index of the first `"` at or after `from`, eight bytes at a time. Most strings of a
/// FHIR body are a dozen bytes long, and for those this takes fewer instructions than the
/// `memchr` call it replaced: the whole pass 7 % fewer on the EHR bench Bundle (callgrind).
#[cfg(test)]
fn next_quote(b: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut k = from;
    while let Some(chunk) = b.get(k..k.saturating_add(8)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w) ^ (u64::from(b'"') * ONES);
        // The lowest flagged byte is exactly the first zero byte of `x`, a `"` in the text: a
        // borrow runs only upwards from a zero byte, and no other byte sets its flag.
        let zero = x.wrapping_sub(ONES) & !x & HIGH;
        if zero != 0 {
            return Some(k + (zero.trailing_zeros() / 8) as usize);
        }
        k += 8;
    }
    b.get(k..)?.iter().position(|&c| c == b'"').map(|p| k + p)
}

/// The closing quote of the string whose content starts at `start`: the first `"` not
/// escaped, that is not preceded by an odd number of `\`.
#[cfg(test)]
fn string_end(b: &[u8], start: usize) -> Option<usize> {
    let mut from = start;
    loop {
        let q = next_quote(b, from)?;
        let slashes = b
            .get(start..q)?
            .iter()
            .rev()
            .take_while(|&&c| c == b'\\')
            .count();
        if slashes % 2 == 0 {
            return Some(q);
        }
        from = q + 1;
    }
}

/// A `resourceType` value the walker starts a `fhir:` path with: the walker's own test.
fn safe_name(s: &[u8]) -> bool {
    std::str::from_utf8(s).is_ok_and(crate::engine::carrier::safe_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, needle: &str) -> u32 {
        let p = text.find(needle).expect("needle") + 1;
        u32::try_from(p).expect("small")
    }

    #[test]
    fn values_belong_to_their_innermost_resource() {
        let t = r#"{"resourceType":"Bundle","entry":[{"resource":{"id":"a1","resourceType":"Practitioner","identifier":[{"value":"v1"}],"contained":[{"resourceType":"Patient","identifier":[{"value":"v2"}]}]}},{"resource":{"resourceType":"Encounter","n":12,"x":{"value":"v3"}}}]}"#;
        let r = Resources::of(t).expect("valid");
        // The type may come after the values it covers.
        assert_eq!(r.resource_of(at(t, r#""a1""#)), Some("Practitioner"));
        assert_eq!(r.resource_of(at(t, r#""v1""#)), Some("Practitioner"));
        assert_eq!(r.resource_of(at(t, r#""v2""#)), Some("Patient"));
        assert_eq!(r.resource_of(at(t, r#""v3""#)), Some("Encounter"));
        assert_eq!(r.resource_of(at(t, "12") - 1), Some("Encounter"));
        // Keys are not values.
        assert_eq!(r.resource_of(at(t, r#""identifier""#)), None);
    }

    /// Escaped quotes do not end a string: the values after a narrative keep their resource,
    /// and an escaped `resourceType` value is not a type.
    #[test]
    fn escaped_quotes_do_not_end_a_string() {
        let t = r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Practitioner","text":{"div":"<div a=\"x\\\">\n\\\\"},"identifier":[{"value":"v1"}]}},{"resource":{"resourceType":"Pat\"ient","x":"v2"}}]}"#;
        let r = Resources::of(t).expect("valid");
        assert_eq!(r.resource_of(at(t, r#""v1""#)), Some("Practitioner"));
        assert_eq!(r.resource_of(at(t, r#""v2""#)), None);
        assert_eq!(r.resource_of(at(t, r#""<div"#)), Some("Practitioner"));
    }

    #[test]
    fn next_quote_finds_the_first_quote() {
        // Every offset, with bytes that look like quotes to a sloppy bit trick around them.
        for len in 0..40 {
            for q in 0..=len {
                let mut b: Vec<u8> = (0..len)
                    .map(|i| [b'!', 0x00, 0xA2, b'#', 0xFF][i % 5])
                    .collect();
                if q < len {
                    b[q] = b'"';
                    if q + 3 < len {
                        b[q + 3] = b'"';
                    }
                }
                for from in 0..=len {
                    let want = b
                        .get(from..)
                        .and_then(|r| r.iter().position(|&c| c == b'"'))
                        .map(|p| from + p);
                    assert_eq!(next_quote(&b, from), want, "{b:?} from {from}");
                }
            }
        }
        assert_eq!(next_quote(b"ab", 5), None);
    }

    /// The objects the one pass builds give every token the resource the separate pass gives
    /// it, keys and escaped pieces included (none).
    #[test]
    fn the_one_pass_finds_the_resources_of_the_reference_pass() {
        let mut bodies: Vec<String> = [
            r#"{"resourceType":"Bundle","entry":[{"resource":{"id":"a1","resourceType":"Practitioner","identifier":[{"value":"v1"}],"contained":[{"resourceType":"Patient","identifier":[{"value":"v2"}]}]}},{"resource":{"resourceType":"Encounter","n":12,"x":{"value":"v3"}}}]}"#,
            r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Practitioner","text":{"div":"<div a=\"x\\\">\n\\\\"},"identifier":[{"value":"v1"}]}},{"resource":{"resourceType":"Pat\"ient","x":"v2"}}]}"#,
            r#"{"resourceType":"Practitioner","resourceType":"Patient","v":"x1"}"#,
            r#"{"resourceType":"Prac-titioner","v":"x1"}"#,
            r#"{"resourceType":7,"resourceType":"Practitioner","v":"x1"}"#,
            r#"{"resourceType":{"a":"b"},"v":"x1","resourceType":"Patient","w":[1,{"x":"y"}]}"#,
            r#"{"resourceType":"Practitioner","c":[{"resourceType":"Bad!","v":"x1"}],"d":[[{"e":"f"}],2]}"#,
            r#"[{"resourceType":"Patient"},{"x":"y"},"z",3,true,null]"#,
            r#"{"a":{"resourceType":null,"b":"c"},"resourceType":"\nX","d":"e"}"#,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        bodies.push(crate::engine::synthetic::ehr_bundle(16 << 10));
        for t in &bodies {
            let p = super::super::profile(t, 100, 0, true).expect("accepted");
            let r = Resources::of(t).expect("valid");
            assert!(p.tokens.len() > 3, "{t}");
            for tok in &p.tokens {
                assert_eq!(
                    p.objects.resource_of(t, tok.obj),
                    r.resource_of(tok.start),
                    "{:?} in {t}",
                    t.get(tok.start as usize..tok.end as usize)
                );
            }
        }
    }

    #[test]
    fn unsure_objects_have_no_resource() {
        for t in [
            r#"{"resourceType":"Practitioner","resourceType":"Patient","v":"x1"}"#,
            r#"{"resourceType":"Prac-titioner","v":"x1"}"#,
            r#"{"resourceType":7,"resourceType":"Practitioner","v":"x1"}"#,
            r#"{"resourceType":{"a":"b"},"v":"x1"}"#,
            r#"{"v":"x1"}"#,
        ] {
            let r = Resources::of(t).expect("valid");
            assert_eq!(r.resource_of(at(t, r#""x1""#)), None, "{t}");
        }
        // An unsure inner object does not fall back to its outer resource.
        let t = r#"{"resourceType":"Practitioner","c":[{"resourceType":"Bad!","v":"x1"}]}"#;
        let r = Resources::of(t).expect("valid");
        assert_eq!(r.resource_of(at(t, r#""x1""#)), None);
    }
}
