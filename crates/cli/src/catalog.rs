//! `harvest products`, `product` and `stock`: browsing the catalog.

use harvest_proto::catalog::v1::{
    Category, GetProductRequest, GetStockRequest, ListProductsRequest,
};

use crate::args;
use crate::connect::{Context, Paging, collect_pages};
use crate::enums::enum_parser;
use crate::error::{CliError, RpcResultExt, Service};
use crate::output::catalog as view;

#[derive(Debug, clap::Args)]
pub struct ProductsArgs {
    /// Only products of this category.
    #[arg(long, value_parser = enum_parser::<Category>())]
    category: Option<Category>,
    /// Only products from this province of origin, e.g. Shaanxi.
    #[arg(long)]
    province: Option<String>,
    /// Only this seller's products.
    #[arg(long, value_name = "SELLER_ID", value_parser = args::id)]
    seller: Option<String>,
    #[command(flatten)]
    paging: Paging,
}

#[derive(Debug, clap::Args)]
pub struct ProductArgs {
    /// The product's id, as `harvest products` lists it.
    #[arg(value_parser = args::id)]
    product_id: String,
}

pub async fn products(context: &Context, request: ProductsArgs) -> Result<(), CliError> {
    let client = context.catalog().await?;
    let products = collect_pages(request.paging, |page_token, page_size| {
        let mut client = client.clone();
        let request = context.unary(ListProductsRequest {
            category: request.category.map_or(0, Into::into),
            origin_province: request.province.clone().unwrap_or_default(),
            seller_id: request.seller.clone().unwrap_or_default(),
            page_size,
            page_token,
        });
        async move {
            let page = client
                .list_products(request)
                .await
                .answered_by(Service::Catalog)?;
            Ok((page.products, page.next_page_token))
        }
    })
    .await?;
    context
        .printer
        .show(&products[..], view::products_human, view::products_json)?;
    Ok(())
}

pub async fn product(context: &Context, request: ProductArgs) -> Result<(), CliError> {
    let product = context
        .catalog()
        .await?
        .get_product(context.unary(GetProductRequest {
            product_id: request.product_id,
        }))
        .await
        .answered_by(Service::Catalog)?;
    context
        .printer
        .show(&product, view::product_human, view::product_json)?;
    Ok(())
}

pub async fn stock(context: &Context, request: ProductArgs) -> Result<(), CliError> {
    let stock = context
        .catalog()
        .await?
        .get_stock(context.unary(GetStockRequest {
            product_id: request.product_id,
        }))
        .await
        .answered_by(Service::Catalog)?;
    context
        .printer
        .show(&stock, view::stock_human, view::stock_json)?;
    Ok(())
}
