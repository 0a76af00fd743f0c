//! Keep each landed file's Parquet page index in the metadata cache, beside its footer.
//!
//! DataFusion's Parquet opener asks for a file's metadata without the page index (so a file
//! no predicate can prune pages of costs no extra read), and when a predicate can prune
//! pages it then loads the index from the file itself, past the metadata cache. The cache
//! thus only ever holds footers, and every query re-read and re-parsed the page index of
//! every file it opened: 8% of the CPU of practice × age × sex over 401 small files
//! (BENCHMARKS.md). Here the first read of a file's metadata takes its page index too, the
//! cache keeps both, and the opener finds the index already loaded on every later query.
//! Landed files are small and Poplar's queries filter on most of them, so the one extra read
//! per file (once per process) is the cheaper side.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::datafusion::common::Result as DfResult;
use deltalake::datafusion::datasource::listing::PartitionedFile;
use deltalake::datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use deltalake::datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use deltalake::datafusion::execution::cache::cache_manager::FileMetadataCache;
use deltalake::datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use deltalake::parquet::arrow::arrow_reader::ArrowReaderOptions;
use deltalake::parquet::arrow::async_reader::AsyncFileReader;
use deltalake::parquet::errors::Result as ParquetResult;
use deltalake::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use futures::future::BoxFuture;
use object_store::ObjectStore;

/// DataFusion's caching reader factory, asking for the page index with every footer.
#[derive(Debug)]
pub struct PageIndexCachingFactory {
    cached: CachedParquetFileReaderFactory,
}

impl PageIndexCachingFactory {
    pub fn new(store: Arc<dyn ObjectStore>, cache: Arc<FileMetadataCache>) -> Self {
        Self {
            cached: CachedParquetFileReaderFactory::new(store, cache),
        }
    }
}

impl ParquetFileReaderFactory for PageIndexCachingFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DfResult<Box<dyn AsyncFileReader + Send>> {
        let reader = self
            .cached
            .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(WithPageIndex { reader, options: None }))
    }
}

/// A reader whose metadata requests always include the page index.
struct WithPageIndex {
    reader: Box<dyn AsyncFileReader + Send>,
    /// The caller's options with the page index asked for; kept here because the request
    /// borrows them for as long as it runs.
    options: Option<ArrowReaderOptions>,
}

impl AsyncFileReader for WithPageIndex {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, ParquetResult<Bytes>> {
        self.reader.get_bytes(range)
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, ParquetResult<Vec<Bytes>>> {
        self.reader.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, ParquetResult<Arc<ParquetMetaData>>> {
        // `Optional`: a file written without a page index still opens.
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        let options = self.options.insert(options);
        self.reader.get_metadata(Some(options))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use deltalake::datafusion::execution::cache::default_cache::DefaultCache;
    use deltalake::parquet::arrow::ArrowWriter;
    use deltalake::parquet::file::properties::WriterProperties;
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, PutMultipartOptions};
    use object_store::{ObjectStoreExt, PutOptions, PutPayload, PutResult};
    use std::fmt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An in-memory store that counts reads.
    #[derive(Debug, Default)]
    struct CountingStore {
        inner: InMemory,
        reads: AtomicUsize,
    }

    impl fmt::Display for CountingStore {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "CountingStore")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for CountingStore {
        async fn put_opts(
            &self,
            path: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(path, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            path: &Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(path, opts).await
        }
        async fn get_opts(&self, path: &Path, options: GetOptions) -> object_store::Result<GetResult> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.get_opts(path, options).await
        }
        async fn get_ranges(&self, path: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.get_ranges(path, ranges).await
        }
        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&Path>) -> futures::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    async fn one_file(store: &CountingStore) -> ObjectMeta {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from_iter_values(0..10_000))])
            .expect("batch");
        let mut bytes = Vec::new();
        // Small pages, so the file has a page index worth the name.
        let properties = WriterProperties::builder().set_data_page_row_count_limit(1_000).build();
        let mut writer = ArrowWriter::try_new(&mut bytes, schema, Some(properties)).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
        let path = Path::from("t/part-0.parquet");
        store.inner.put(&path, bytes.into()).await.expect("put");
        store.inner.head(&path).await.expect("head")
    }

    /// Opens one file twice through the factory `make` builds, asking first for the footer
    /// only, as DataFusion's opener does. For each open: whether the page index came with
    /// the footer, and the store's reads so far.
    async fn open_twice(
        make: impl Fn(Arc<CountingStore>, Arc<FileMetadataCache>) -> Box<dyn ParquetFileReaderFactory>,
    ) -> Vec<(bool, usize)> {
        let store = Arc::new(CountingStore::default());
        let meta = one_file(&store).await;
        let factory = make(store.clone(), Arc::new(DefaultCache::new(1 << 20)));
        let metrics = ExecutionPlanMetricsSet::new();
        let footer_only = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Skip);
        let mut opens = Vec::new();
        for _ in 0..2 {
            let mut reader = factory
                .create_reader(0, PartitionedFile::from(meta.clone()), None, &metrics)
                .expect("reader");
            let metadata = reader.get_metadata(Some(&footer_only)).await.expect("metadata");
            let indexed = metadata.column_index().is_some() && metadata.offset_index().is_some();
            opens.push((indexed, store.reads.load(Ordering::SeqCst)));
        }
        opens
    }

    #[tokio::test]
    async fn the_page_index_is_read_once_and_then_served_from_the_cache() {
        let opens = open_twice(|store, cache| Box::new(PageIndexCachingFactory::new(store, cache))).await;
        let [(true, first_reads), (true, second_reads)] = opens[..] else {
            panic!("an open came without the page index: {opens:?}");
        };
        assert!(first_reads > 0);
        assert_eq!(second_reads, first_reads, "the second open read the file again");
    }

    #[tokio::test]
    async fn datafusions_own_factory_caches_the_footer_without_the_index() {
        // Why this module exists: if DataFusion starts caching the index itself, this fails
        // and the module can go.
        let opens = open_twice(|store, cache| Box::new(CachedParquetFileReaderFactory::new(store, cache))).await;
        assert!(opens.iter().all(|(indexed, _)| !indexed), "{opens:?}");
    }
}
