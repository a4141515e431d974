//! `partners.csv`, `distributor_links.csv`, `capability_tags.csv`: who the partners are, which
//! distributor a reseller belongs to, and which capability tags a partner holds when.

use super::cell::{Checked, Fault, check_window};
use super::table::{Row, Schema};
use super::{Partners, field_count_fault};
use crate::model::{CapabilityTag, DistributorLink, Partner, PartnerType};
use crate::reject::{Reject, RejectCode};
use std::collections::HashMap;
use strum::{IntoStaticStr, VariantNames};

#[derive(Debug, Clone, Copy, VariantNames, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PartnerColumn {
    PartnerId,
    Name,
    PartnerType,
    BusinessRegion,
    Market,
    Programme,
    JoinedOn,
    ExitedOn,
}

impl Schema for PartnerColumn {
    const FILE: &'static str = "partners.csv";
    const FILE_REQUIRED: bool = true;
    const OPTIONAL: &'static [Self] = &[PartnerColumn::ExitedOn];
    fn index(self) -> usize {
        self as usize
    }
    // A name may run over lines (an address-like trade name); no other cell may.
    const MULTILINE: Option<Self> = Some(PartnerColumn::Name);
    fn is_complete(row: &Row<'_, Self>) -> bool {
        parse_partner(row).is_ok()
    }
}

pub(super) fn parse_partner(row: &Row<'_, PartnerColumn>) -> Checked<Partner> {
    use PartnerColumn as C;
    if !row.has_header_width() {
        return Err(field_count_fault(row));
    }
    let partner_id = row.cell(C::PartnerId).id()?;
    let name = row.cell(C::Name).text()?.to_string();
    let partner_type = row
        .cell(C::PartnerType)
        .code("solution_provider, distributor, reseller")?;
    let business_region = row.cell(C::BusinessRegion).text()?.to_string();
    let market = row.cell(C::Market).code("cn, intl")?;
    let programme = row
        .cell(C::Programme)
        .code("solution_provider, distribution")?;
    let joined_on = row.cell(C::JoinedOn).date()?;
    let exited_cell = row.cell(C::ExitedOn);
    let exited_on = exited_cell.optional_date()?;
    check_window(exited_cell, joined_on, exited_on, "joined_on")?;
    Ok(Partner {
        partner_id,
        name,
        partner_type,
        business_region,
        market,
        programme,
        joined_on,
        exited_on,
    })
}

#[derive(Debug, Clone, Copy, VariantNames, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum LinkColumn {
    ResellerId,
    DistributorId,
    ValidFrom,
    ValidTo,
}

impl Schema for LinkColumn {
    const FILE: &'static str = "distributor_links.csv";
    const FILE_REQUIRED: bool = false;
    const OPTIONAL: &'static [Self] = &[LinkColumn::ValidTo];
    fn index(self) -> usize {
        self as usize
    }
}

pub(super) fn parse_link(
    row: &Row<'_, LinkColumn>,
    partners: &Partners,
) -> Checked<DistributorLink> {
    use LinkColumn as C;
    if !row.has_header_width() {
        return Err(field_count_fault(row));
    }
    let reseller_cell = row.cell(C::ResellerId);
    let (reseller_idx, reseller) = partners.known(reseller_cell)?;
    if reseller.partner_type != PartnerType::Reseller {
        return Err(Fault::new(
            reseller_cell,
            RejectCode::NotAReseller,
            format!(
                "{} is a {}, not a reseller",
                reseller.partner_id, reseller.partner_type
            ),
        ));
    }
    let distributor_cell = row.cell(C::DistributorId);
    let (distributor_idx, distributor) = partners.known(distributor_cell)?;
    if distributor.partner_type != PartnerType::Distributor {
        return Err(Fault::new(
            distributor_cell,
            RejectCode::NotADistributor,
            format!(
                "{} is a {}, not a distributor",
                distributor.partner_id, distributor.partner_type
            ),
        ));
    }
    if distributor.business_region != reseller.business_region {
        return Err(Fault::new(
            distributor_cell,
            RejectCode::CrossRegionLink,
            format!(
                "distributor {} is in business region {}, reseller {} in {}; a reseller links only within its region",
                distributor.partner_id,
                distributor.business_region,
                reseller.partner_id,
                reseller.business_region
            ),
        ));
    }
    let valid_from = row.cell(C::ValidFrom).date()?;
    let to_cell = row.cell(C::ValidTo);
    let valid_to = to_cell.optional_date()?;
    check_window(to_cell, valid_from, valid_to, "valid_from")?;
    Ok(DistributorLink {
        reseller: reseller_idx,
        distributor: distributor_idx,
        valid_from,
        valid_to,
    })
}

/// A reseller has one distributor at a time (seed 2): of two links whose periods overlap (both ends
/// inclusive), the one that starts later is rejected (on equal starts, the later row).
pub(super) fn reject_overlapping_links(
    links: Vec<(u64, DistributorLink)>,
    partners: &Partners,
    rejects: &mut Vec<Reject>,
) -> Vec<(u64, DistributorLink)> {
    let mut by_reseller: HashMap<_, Vec<(u64, DistributorLink)>> = HashMap::new();
    for (row, link) in links {
        by_reseller
            .entry(link.reseller)
            .or_default()
            .push((row, link));
    }
    let mut kept: Vec<(u64, DistributorLink)> = Vec::new();
    for (_, mut group) in by_reseller {
        group.sort_by_key(|(row, link)| (link.valid_from, *row));
        let mut accepted: Vec<(u64, DistributorLink)> = Vec::new();
        for (row, link) in group {
            let clash = accepted
                .iter()
                .find(|(_, k)| k.valid_to.is_none_or(|end| end >= link.valid_from));
            match clash {
                Some((other_row, other)) => rejects.push(Reject {
                    file: LinkColumn::FILE,
                    row,
                    column: "valid_from",
                    value: link.valid_from.to_string(),
                    code: RejectCode::OverlappingLink,
                    detail: format!(
                        "reseller {} is already linked to {} from {} to {} (row {other_row}); a reseller has one distributor at a time",
                        partners.at(link.reseller).partner_id,
                        partners.at(other.distributor).partner_id,
                        other.valid_from,
                        other.valid_to.map_or_else(|| "open".to_string(), |d| d.to_string()),
                    ),
                }),
                None => accepted.push((row, link)),
            }
        }
        kept.extend(accepted);
    }
    kept.sort_by_key(|(row, _)| *row);
    kept
}

#[derive(Debug, Clone, Copy, VariantNames, IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum TagColumn {
    PartnerId,
    Tag,
    ValidFrom,
    ValidTo,
}

impl Schema for TagColumn {
    const FILE: &'static str = "capability_tags.csv";
    const FILE_REQUIRED: bool = false;
    const OPTIONAL: &'static [Self] = &[TagColumn::ValidTo];
    fn index(self) -> usize {
        self as usize
    }
}

pub(super) fn parse_tag(row: &Row<'_, TagColumn>, partners: &Partners) -> Checked<CapabilityTag> {
    use TagColumn as C;
    if !row.has_header_width() {
        return Err(field_count_fault(row));
    }
    let (partner, _) = partners.known(row.cell(C::PartnerId))?;
    let tag = row.cell(C::Tag).text()?.to_string();
    let valid_from = row.cell(C::ValidFrom).date()?;
    let to_cell = row.cell(C::ValidTo);
    let valid_to = to_cell.optional_date()?;
    check_window(to_cell, valid_from, valid_to, "valid_from")?;
    Ok(CapabilityTag {
        partner,
        tag,
        valid_from,
        valid_to,
    })
}
