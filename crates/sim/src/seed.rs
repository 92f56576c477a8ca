//! A sample catalog: produce from villages in several provinces, with stock
//! lots and best-before dates.

use crate::Channel;
use harvest_domain::Date;
use harvest_kit::auth::Role;
use harvest_kit::issuer::act_as;
use harvest_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use harvest_proto::catalog::v1::{
    Category, CollectionPointInput, CreateProductRequest, Product, ReceiveStockLotRequest, Unit,
};
use harvest_proto::common::v1::{Date as ProtoDate, GeoPoint, Origin, Seller, SellerKind};

/// One sample product and its seller.
pub struct SampleProduct {
    pub seller_id: &'static str,
    pub seller: &'static str,
    pub kind: SellerKind,
    pub village: &'static str,
    pub county: &'static str,
    pub province: &'static str,
    pub name: &'static str,
    pub category: Category,
    pub unit: Unit,
    pub price_fen: i64,
    /// Days from harvest to best-before for perishables; `None` otherwise.
    pub shelf_life_days: Option<i32>,
    pub cold_chain: bool,
    pub point: &'static str,
    pub latitude: f64,
    pub longitude: f64,
    /// Units per lot; one lot is received for each entry.
    pub lots: &'static [i64],
}

pub const SAMPLE_PRODUCTS: &[SampleProduct] = &[
    SampleProduct {
        seller_id: "coop-luochuan-apples",
        seller: "Luochuan Apple Cooperative",
        kind: SellerKind::Cooperative,
        village: "Fengqi",
        county: "Luochuan",
        province: "Shaanxi",
        name: "Fuji apples, 5 kg box",
        category: Category::Fruit,
        unit: Unit::Box,
        price_fen: 6_800,
        shelf_life_days: Some(45),
        cold_chain: false,
        point: "Fengqi village square",
        latitude: 35.76,
        longitude: 109.43,
        lots: &[400, 300],
    },
    SampleProduct {
        seller_id: "farmer-wang-walnuts",
        seller: "Wang Jianguo",
        kind: SellerKind::Farmer,
        village: "Jiajiazhuang",
        county: "Fenyang",
        province: "Shanxi",
        name: "Thin-shell walnuts, 1 kg bag",
        category: Category::Nuts,
        unit: Unit::Bag,
        price_fen: 4_500,
        shelf_life_days: None,
        cold_chain: false,
        point: "Jiajiazhuang grain station",
        latitude: 37.27,
        longitude: 111.79,
        lots: &[250],
    },
    SampleProduct {
        seller_id: "coop-qinling-honey",
        seller: "Qinling Beekeepers Cooperative",
        kind: SellerKind::Cooperative,
        village: "Xiaoyu",
        county: "Zhouzhi",
        province: "Shaanxi",
        name: "Wild jujube honey, 500 g jar",
        category: Category::Honey,
        unit: Unit::Jar,
        price_fen: 8_800,
        shelf_life_days: None,
        cold_chain: false,
        point: "Xiaoyu township office",
        latitude: 34.16,
        longitude: 108.22,
        lots: &[150, 150],
    },
    SampleProduct {
        seller_id: "coop-zunyi-chilli",
        seller: "Zunyi Chilli Growers",
        kind: SellerKind::Cooperative,
        village: "Xiazi",
        county: "Xinpu",
        province: "Guizhou",
        name: "Facing-heaven chillies, dried, 500 g",
        category: Category::Spice,
        unit: Unit::Bag,
        price_fen: 3_200,
        shelf_life_days: None,
        cold_chain: false,
        point: "Xiazi chilli market",
        latitude: 27.70,
        longitude: 107.03,
        lots: &[500],
    },
    SampleProduct {
        seller_id: "coop-dingxi-potatoes",
        seller: "Anding Potato Cooperative",
        kind: SellerKind::Cooperative,
        village: "Xijiang",
        county: "Anding",
        province: "Gansu",
        name: "Yellow-flesh potatoes, 10 jin",
        category: Category::Vegetable,
        unit: Unit::Bag,
        price_fen: 2_900,
        shelf_life_days: Some(60),
        cold_chain: false,
        point: "Xijiang village cold store",
        latitude: 35.58,
        longitude: 104.63,
        lots: &[600],
    },
    SampleProduct {
        seller_id: "farmer-li-puer",
        seller: "Li Mei",
        kind: SellerKind::Farmer,
        village: "Jingmai",
        county: "Lancang",
        province: "Yunnan",
        name: "Jingmai raw pu'er cake, 357 g",
        category: Category::Tea,
        unit: Unit::Piece,
        price_fen: 26_800,
        shelf_life_days: None,
        cold_chain: false,
        point: "Jingmai mountain tea house",
        latitude: 22.18,
        longitude: 100.02,
        lots: &[80],
    },
    SampleProduct {
        seller_id: "coop-qingyuan-mushrooms",
        seller: "Qingyuan Shiitake Cooperative",
        kind: SellerKind::Cooperative,
        village: "Longgong",
        county: "Qingyuan",
        province: "Zhejiang",
        name: "Fresh shiitake, 1 kg",
        category: Category::Mushroom,
        unit: Unit::Kilogram,
        price_fen: 3_600,
        shelf_life_days: Some(7),
        cold_chain: true,
        point: "Longgong mushroom hall",
        latitude: 27.62,
        longitude: 119.07,
        lots: &[200],
    },
    SampleProduct {
        seller_id: "coop-wuchang-rice",
        seller: "Wuchang Paddy Cooperative",
        kind: SellerKind::Cooperative,
        village: "Minle",
        county: "Wuchang",
        province: "Heilongjiang",
        name: "Daohuaxiang rice, 5 kg",
        category: Category::Grain,
        unit: Unit::Bag,
        price_fen: 9_900,
        shelf_life_days: None,
        cold_chain: false,
        point: "Minle rice mill",
        latitude: 44.92,
        longitude: 127.15,
        lots: &[300, 300],
    },
    SampleProduct {
        seller_id: "farmer-chen-oranges",
        seller: "Chen Youfu",
        kind: SellerKind::Farmer,
        village: "Anxi",
        county: "Xinfeng",
        province: "Jiangxi",
        name: "Gannan navel oranges, 5 kg box",
        category: Category::Fruit,
        unit: Unit::Box,
        price_fen: 5_800,
        shelf_life_days: Some(30),
        cold_chain: false,
        point: "Anxi orchard gate",
        latitude: 25.39,
        longitude: 114.92,
        lots: &[350],
    },
    SampleProduct {
        seller_id: "coop-baise-mangoes",
        seller: "Tianyang Mango Cooperative",
        kind: SellerKind::Cooperative,
        village: "Napo",
        county: "Tianyang",
        province: "Guangxi",
        name: "Guifei mangoes, 3 kg box",
        category: Category::Fruit,
        unit: Unit::Box,
        price_fen: 7_500,
        shelf_life_days: Some(12),
        cold_chain: true,
        point: "Napo packing shed",
        latitude: 23.74,
        longitude: 106.92,
        lots: &[220],
    },
    SampleProduct {
        seller_id: "coop-zhongning-goji",
        seller: "Zhongning Goji Cooperative",
        kind: SellerKind::Cooperative,
        village: "Ningan",
        county: "Zhongning",
        province: "Ningxia",
        name: "Dried goji berries, 500 g",
        category: Category::Fruit,
        unit: Unit::Bag,
        price_fen: 4_800,
        shelf_life_days: None,
        cold_chain: false,
        point: "Ningan goji market",
        latitude: 37.48,
        longitude: 105.68,
        lots: &[400],
    },
    SampleProduct {
        seller_id: "farmer-zhao-eggs",
        seller: "Zhao Guihua",
        kind: SellerKind::Farmer,
        village: "Shangzhuang",
        county: "Yishui",
        province: "Shandong",
        name: "Free-range eggs, 30",
        category: Category::Eggs,
        unit: Unit::Box,
        price_fen: 4_200,
        shelf_life_days: Some(21),
        cold_chain: false,
        point: "Shangzhuang village shop",
        latitude: 35.79,
        longitude: 118.63,
        lots: &[180],
    },
];

fn proto_date(date: Date) -> ProtoDate {
    let (year, month, day) = date.ymd();
    ProtoDate { year, month, day }
}

/// Creates the sample products and receives their lots. Safe to run again:
/// request and lot ids make every call idempotent.
pub async fn seed_catalog(
    client: &mut CatalogServiceClient<Channel>,
) -> Result<Vec<Product>, tonic::Status> {
    seed_catalog_with(client, 1).await
}

/// [`seed_catalog`] with every lot `stock_factor` times larger, for load.
pub async fn seed_catalog_with(
    client: &mut CatalogServiceClient<Channel>,
    stock_factor: i64,
) -> Result<Vec<Product>, tonic::Status> {
    let today = Date::today();
    let mut products = Vec::with_capacity(SAMPLE_PRODUCTS.len());
    for sample in SAMPLE_PRODUCTS {
        let product = client
            .create_product(act_as(
                Role::Seller,
                sample.seller_id,
                CreateProductRequest {
                    seller: Some(Seller {
                        seller_id: sample.seller_id.to_owned(),
                        name: sample.seller.to_owned(),
                        kind: sample.kind.into(),
                        origin: Some(Origin {
                            village: sample.village.to_owned(),
                            county: sample.county.to_owned(),
                            province: sample.province.to_owned(),
                        }),
                    }),
                    name: sample.name.to_owned(),
                    category: sample.category.into(),
                    unit: sample.unit.into(),
                    price_fen: sample.price_fen,
                    perishable: sample.shelf_life_days.is_some(),
                    shelf_life_days: sample.shelf_life_days.unwrap_or(0),
                    cold_chain: sample.cold_chain,
                    collection_point: Some(CollectionPointInput {
                        name: sample.point.to_owned(),
                        location: Some(GeoPoint {
                            latitude: sample.latitude,
                            longitude: sample.longitude,
                        }),
                    }),
                    request_id: format!("seed-{}", sample.seller_id),
                    per_buyer_limit: 0,
                },
            ))
            .await?
            .into_inner();
        for (index, quantity) in sample.lots.iter().enumerate() {
            // Later lots were harvested later, so they keep longer.
            let harvested = today.plus_days(-(sample.lots.len() as i32 - index as i32));
            let best_before = match sample.shelf_life_days {
                Some(_) => None,
                None => Some(proto_date(today.plus_days(365 + 30 * index as i32))),
            };
            let lot = ReceiveStockLotRequest {
                product_id: product.product_id.clone(),
                lot_id: format!("{}-lot{}", sample.seller_id, index + 1),
                quantity: quantity * stock_factor.max(1),
                harvest_date: Some(proto_date(harvested)),
                best_before,
            };
            client
                .receive_stock_lot(act_as(Role::Seller, sample.seller_id, lot))
                .await?;
        }
        products.push(product);
    }
    Ok(products)
}
