//! `harvest-stack`: runs Harvest locally, in one command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use harvest_bus::{BusConfig, Topology};
use harvest_domain::Regions;
use harvest_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use harvest_proto::catalog::v1::{GetStockRequest, ListProductsRequest};
use harvest_stack::{ServiceKind, Stack, StackOptions, seed};

/// Runs Harvest on this machine: a Kafka-protocol broker, Redis, the topics
/// and the services, each as its own process on free loopback ports.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Where logs and data go; cleared at start.
    #[arg(long, global = true, default_value = "target/harvest")]
    state_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Start everything, seed a sample catalog, show it, and stop.
    Demo {
        /// Keep running after the walk-through until Ctrl-C.
        #[arg(long)]
        hold: bool,
    },
    /// Start everything with a sample catalog and print the endpoints; runs
    /// until Ctrl-C.
    Run,
    /// Print the topics of a deployment, and create the missing ones with
    /// --create.
    Topics {
        /// Brokers to create the topics on.
        #[arg(long, default_value = "127.0.0.1:9092")]
        brokers: String,
        /// Every region of the deployment, comma-separated.
        #[arg(long, default_value_t = Regions::default().to_string())]
        regions: String,
        #[arg(long, default_value_t = BusConfig::default().partitions)]
        partitions: i32,
        #[arg(long, default_value_t = BusConfig::default().replication_factor)]
        replication_factor: i32,
        /// Prepended to every topic name.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Create the missing topics on --brokers.
        #[arg(long)]
        create: bool,
    },
}

/// The services that exist so far.
const SERVICES: [ServiceKind; 2] = [ServiceKind::Catalog, ServiceKind::Orders];

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("harvest-stack: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Topics {
        brokers,
        regions,
        partitions,
        replication_factor,
        prefix,
        create,
    } = cli.command
    {
        let names: Vec<String> = regions.split(',').map(|r| r.trim().to_owned()).collect();
        let regions = Regions::try_from(names).context("--regions")?;
        let bus = BusConfig {
            brokers,
            topic_prefix: prefix,
            partitions,
            replication_factor,
            ..BusConfig::default()
        };
        bus.validate().map_err(anyhow::Error::msg)?;
        let topics = Topology::new(&bus, regions).all_topics();
        for topic in &topics {
            println!(
                "{:<48} partitions {:>3}  replication {}  retention {} h",
                topic.name,
                topic.partitions,
                topic.replication_factor,
                topic.retention_ms / 3_600_000
            );
        }
        if create {
            let created = harvest_bus::admin::ensure_topics(&bus, &topics).await?;
            println!(
                "created {} of {} topics on {}",
                created.len(),
                topics.len(),
                bus.brokers
            );
        }
        return Ok(());
    }
    if cli.state_dir.exists() {
        std::fs::remove_dir_all(&cli.state_dir)
            .with_context(|| format!("clearing {}", cli.state_dir.display()))?;
    }
    let mut options = StackOptions::new(&cli.state_dir);
    options.durable = true;
    options.services = SERVICES.to_vec();
    println!(
        "starting redis, the broker and {} service(s)…",
        options.services.len()
    );
    let stack = Stack::start(options).await?;
    println!("  broker    {}", stack.bootstrap());
    println!("  redis     {}", stack.redis_url());
    for kind in SERVICES {
        let grpc = stack
            .grpc_addr(kind)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let admin = stack
            .admin_addr(kind)
            .map(|a| a.to_string())
            .unwrap_or_default();
        println!(
            "  {kind:<9} grpc {grpc}  metrics http://{admin}/metrics  log {}",
            stack.log_file(kind).display()
        );
    }

    let mut catalog = CatalogServiceClient::connect(stack.endpoint(ServiceKind::Catalog)?).await?;
    print!("seeding the catalog… ");
    let products = seed::seed_catalog(&mut catalog).await?;
    println!(
        "{} products from {} provinces",
        products.len(),
        provinces(&products)
    );

    match cli.command {
        Command::Demo { hold } => {
            show_catalog(&mut catalog).await?;
            if hold {
                wait_for_ctrl_c(&stack).await;
            }
        }
        Command::Run => wait_for_ctrl_c(&stack).await,
        Command::Topics { .. } => {}
    }
    println!("stopping…");
    stack.stop();
    println!("stopped");
    Ok(())
}

fn provinces(products: &[harvest_proto::catalog::v1::Product]) -> usize {
    let mut provinces: Vec<&str> = products
        .iter()
        .filter_map(|p| p.seller.as_ref()?.origin.as_ref())
        .map(|origin| origin.province.as_str())
        .collect();
    provinces.sort_unstable();
    provinces.dedup();
    provinces.len()
}

async fn show_catalog(
    catalog: &mut CatalogServiceClient<tonic::transport::Channel>,
) -> anyhow::Result<()> {
    let listed = catalog
        .list_products(ListProductsRequest::default())
        .await?
        .into_inner();
    println!();
    println!(
        "{:<38} {:<13} {:>10} {:>9} {:>9}  best before",
        "product", "province", "price", "on hand", "available"
    );
    for product in listed.products {
        let stock = catalog
            .get_stock(GetStockRequest {
                product_id: product.product_id.clone(),
            })
            .await?
            .into_inner();
        let province = product
            .seller
            .as_ref()
            .and_then(|s| s.origin.as_ref())
            .map(|o| o.province.clone())
            .unwrap_or_default();
        let best_before = stock
            .lots
            .first()
            .and_then(|lot| lot.best_before)
            .map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
            .unwrap_or_default();
        println!(
            "{:<38} {:<13} {:>10} {:>9} {:>9}  {}",
            product.name,
            province,
            harvest_domain::Fen::parse(product.price_fen)
                .map(|f| f.to_string())
                .unwrap_or_default(),
            stock.on_hand,
            stock.available,
            best_before
        );
    }
    println!();
    Ok(())
}

async fn wait_for_ctrl_c(stack: &Stack) {
    println!(
        "running; the catalog API is at {} (Ctrl-C to stop)",
        stack.endpoint(ServiceKind::Catalog).unwrap_or_default()
    );
    let _ = tokio::signal::ctrl_c().await;
    // Leave a moment for the services to see the same signal.
    tokio::time::sleep(Duration::from_millis(100)).await;
}
