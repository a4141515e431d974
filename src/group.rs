//! Items grouped by partner with one counting sort: the one way the engine groups lines, rows
//! or vouchers by partner, and the unit of parallel work in evaluation, pools, vouchers,
//! explanations, the identities and the journal (SPEC §8: per partner the work is independent).

/// Indices `0..n` grouped by partner: `items[starts[p]..starts[p + 1]]`, each group in input
/// order (so anything computed from a group is the same whatever the thread count).
pub struct Grouped {
    starts: Vec<usize>,
    items: Vec<u32>,
}

impl Grouped {
    /// Groups `0..n` by `partner_of` (None: left out), for `partners` partners.
    pub fn new(partners: usize, n: usize, partner_of: impl Fn(usize) -> Option<usize>) -> Grouped {
        let mut starts = vec![0usize; partners + 1];
        for i in 0..n {
            if let Some(p) = partner_of(i) {
                starts[p + 1] += 1;
            }
        }
        for p in 0..partners {
            starts[p + 1] += starts[p];
        }
        let mut next = starts.clone();
        let mut items = vec![0u32; starts[partners]];
        for i in 0..n {
            if let Some(p) = partner_of(i) {
                items[next[p]] = i as u32;
                next[p] += 1;
            }
        }
        Grouped { starts, items }
    }

    /// How many items were grouped (those left out not counted).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items of partner `p`, in input order.
    pub fn of(&self, p: u32) -> &[u32] {
        let p = p as usize;
        &self.items[self.starts[p]..self.starts[p + 1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_partner_gets_its_items_in_input_order_and_none_are_left_out() {
        // Items 0..6 of partners [1, 0, 1, -, 2, 1].
        let of = [Some(1), Some(0), Some(1), None, Some(2), Some(1)];
        let g = Grouped::new(3, of.len(), |i| of[i]);
        assert_eq!(g.of(0), &[1]);
        assert_eq!(g.of(1), &[0, 2, 5]);
        assert_eq!(g.of(2), &[4]);
    }
}
