using Qed.Format;

namespace Qed.Tests.Format;

/// <summary>
/// One test per open-time rule of QED-FORMAT.md §2.1, in QEMU's order, with QEMU's message as the prefix of ours
/// (iotest 116 covers the same cases). Pairs of broken fields check that the earlier rule decides the message.
/// </summary>
public class HeaderValidatorTests
{
    private const int Cs = 0x10000;

    /// <summary>A freshly created default image: cs 64 KiB, ts 4, header 1 cluster, L1 at 0x10000, 16 MiB.</summary>
    private static readonly QedHeader s_valid = new()
    {
        Magic = HeaderLayout.Magic,
        ClusterSize = Cs,
        TableSize = 4,
        HeaderSize = 1,
        L1TableOffset = Cs,
        ImageSize = 16 << 20,
    };

    private const long ValidLength = 0x50000;

    private static QedFormatException Fails(QedHeader header, long length, string qemuPrefix)
    {
        var e = Assert.Throws<QedFormatException>(() => HeaderValidator.Validate(header, length));
        Assert.StartsWith(qemuPrefix, e.Message, StringComparison.Ordinal);
        return e;
    }

    [Fact]
    public void ValidHeader_GivesItsGeometry()
    {
        var g = HeaderValidator.Validate(s_valid, ValidLength);
        Assert.Equal(new QedGeometry(Cs, 4), g);
    }

    // ---- 1. truncated files (iotest 116 "truncated header cluster"; §2.1: fails at step 8) ----

    [Theory]
    [InlineData(512)]
    [InlineData(100)]
    [InlineData(40)]
    [InlineData(0x30000)] // truncated inside the L1 table (F23)
    [InlineData(0x4fe00)] // one sector short: the last L1 cluster is past the end (QEMU counts a file in whole 512-byte sectors)
    public void TruncatedFile_TableOffsetIsInvalid(long length)
    {
        byte[] bytes = new byte[HeaderLayout.Size];
        s_valid.WriteTo(bytes);
        // What open sees: the first bytes of the file, zero-padded.
        var header = QedHeader.Parse(bytes.AsSpan(0, (int)Math.Min(length, HeaderLayout.Size)));
        Fails(header, length, "QED table offset is invalid");
    }

    // ---- 2. magic ----

    [Theory]
    [InlineData(0x58444551u)] // "QEDX"
    [InlineData(0u)]
    [InlineData(0xfb494651u)] // qcow2
    public void BadMagic(uint magic)
    {
        Fails(s_valid with { Magic = magic }, ValidLength, "Image not in QED format");
    }

    [Fact]
    public void BadMagic_ComesBeforeEverythingElse()
    {
        var header = s_valid with { Magic = 1, Features = (QedFeatures)0x08, ClusterSize = 3000, TableSize = 3, ImageSize = 1 };
        Fails(header, 0, "Image not in QED format");
    }

    // ---- 3. unknown incompatible features ----

    [Theory]
    [InlineData(0x08UL, "Unsupported QED features: 8")]
    [InlineData(0x18UL, "Unsupported QED features: 18")]
    [InlineData(0x1fUL, "Unsupported QED features: 18")] // known bits are not listed (verified with qemu-io)
    [InlineData(0x8000000000000000UL, "Unsupported QED features: 8000000000000000")]
    public void UnknownFeatures_AreUnsupported_WithQemusExactMessage(ulong features, string message)
    {
        var e = Assert.Throws<QedUnsupportedException>(() => HeaderValidator.Validate(s_valid with { Features = (QedFeatures)features }, ValidLength));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void UnknownFeatures_ComeBeforeClusterSize()
    {
        Assert.Throws<QedUnsupportedException>(() => HeaderValidator.Validate(s_valid with { Features = (QedFeatures)0x08, ClusterSize = 3000 }, ValidLength));
    }

    // ---- 4. cluster size ----

    [Theory]
    [InlineData(0u)]
    [InlineData(3000u)]
    [InlineData(1u << 27)]
    [InlineData(2048u)]
    [InlineData(0xffffffffu)]
    public void BadClusterSize(uint cs)
    {
        var e = Fails(s_valid with { ClusterSize = cs }, ValidLength, "QED cluster size is invalid");
        Assert.Contains("cluster_size", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BadClusterSize_ComesBeforeTableSize()
    {
        Fails(s_valid with { ClusterSize = 3000, TableSize = 3 }, ValidLength, "QED cluster size is invalid");
    }

    // ---- 6. table size ----

    [Theory]
    [InlineData(0u)]
    [InlineData(3u)]
    [InlineData(32u)]
    [InlineData(0xffffffffu)]
    public void BadTableSize(uint ts)
    {
        var e = Fails(s_valid with { TableSize = ts }, ValidLength, "QED table size is invalid");
        Assert.Contains("table_size", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BadTableSize_ComesBeforeImageSize()
    {
        Fails(s_valid with { TableSize = 3, ImageSize = 1000 }, ValidLength, "QED table size is invalid");
    }

    // ---- 7. image size ----

    [Theory]
    [InlineData(1000UL)]
    [InlineData(511UL)]
    [InlineData((64UL << 40) + 512)] // 64 KiB / ts 4: the maximum is exactly 64 TiB
    [InlineData(ulong.MaxValue)]
    [InlineData(0x8000000000000000UL)]
    public void BadImageSize(ulong size)
    {
        var e = Fails(s_valid with { ImageSize = size }, ValidLength, "QED image size is invalid");
        Assert.Contains("image_size", e.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0UL)]
    [InlineData(512UL)]
    [InlineData(64UL << 40)]
    public void GoodImageSize(ulong size)
    {
        HeaderValidator.Validate(s_valid with { ImageSize = size }, ValidLength);
    }

    [Fact]
    public void ImageSize_SmallGeometry_MaxIs4GiB()
    {
        var header = s_valid with { ClusterSize = 4096, TableSize = 2, L1TableOffset = 4096 };
        HeaderValidator.Validate(header with { ImageSize = 4UL << 30 }, 3 * 4096);
        Fails(header with { ImageSize = (4UL << 30) + 512 }, 3 * 4096, "QED image size is invalid");
    }

    [Fact]
    public void ImageSize_WrappedGeometry_AcceptsWhatFitsTheTrueBound()
    {
        // 4 MiB clusters, ts 4: QEMU's wrapped maximum is 0 and it rejects any size > 0. The true bound is huge and we
        // read such an image (the creator refuses to make one, see the Image tests).
        const uint cs = 4 << 20;
        var header = s_valid with { ClusterSize = cs, TableSize = 4, L1TableOffset = cs, ImageSize = 1 << 20 };
        Assert.Equal(0UL, new QedGeometry((int)cs, 4).QemuMaxImageSize);
        HeaderValidator.Validate(header, 5L * cs);
    }

    [Fact]
    public void BadImageSize_ComesBeforeTableOffset()
    {
        Fails(s_valid with { ImageSize = 1000, L1TableOffset = 1 }, ValidLength, "QED image size is invalid");
    }

    // ---- 8. L1 table offset ----

    [Theory]
    [InlineData(0x10001UL, ValidLength)] // unaligned
    [InlineData(0x18000UL, ValidLength)] // aligned to 512 but not to the cluster
    [InlineData(0UL, ValidLength)] // inside the header
    [InlineData(0x50000UL, ValidLength)] // beyond the end of the file
    [InlineData(0x20000UL, ValidLength)] // first cluster fine, last one past the end
    [InlineData(0x10000UL, 0x40000L)] // L1 truncated
    [InlineData(ulong.MaxValue, ValidLength)] // iotest 116 pokes all ones
    [InlineData(0xffffffffffff0000UL, ValidLength)] // aligned, but the last cluster overflows 64 bits
    public void BadL1Offset(ulong offset, long length)
    {
        var e = Fails(s_valid with { L1TableOffset = offset }, length, "QED table offset is invalid");
        Assert.Contains("l1_table_offset", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void HeaderSizeAllOnes_FailsAtTheTableOffset()
    {
        // iotest 116 "invalid header size": QEMU reports the table offset (the L1 lies inside the huge header area).
        Fails(s_valid with { HeaderSize = 0xffffffff }, ValidLength, "QED table offset is invalid");
    }

    [Fact]
    public void HeaderSize_InsideL1_FailsAtTheTableOffset()
    {
        Fails(s_valid with { HeaderSize = 2 }, ValidLength, "QED table offset is invalid");
    }

    [Fact]
    public void BadTableOffset_ComesBeforeBackingName()
    {
        var header = s_valid with { L1TableOffset = 1, Features = QedFeatures.BackingFile, BackingFilenameOffset = 0xffff0000, BackingFilenameSize = 5000 };
        Fails(header, ValidLength, "QED table offset is invalid");
    }

    // ---- 9. header size too large (only reachable with files larger than 4 GiB) ----

    [Fact]
    public void HeaderSizeTooLarge_WhenTheFileIsHuge()
    {
        // 0x10000 clusters of 64 KiB = 4 GiB of header: header_size > 0xffffffff / cs. The L1 after it is valid in a 1 TiB file.
        var header = s_valid with { HeaderSize = 0x10000, L1TableOffset = 1UL << 32 };
        var e = Fails(header, 1L << 40, "QED header size is too large");
        Assert.Contains("header_size", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void HeaderSizeJustBelowTheLimit_IsFine()
    {
        // 0xffff clusters of 64 KiB = 0xffff0000 bytes, still below 0xffffffff.
        var header = s_valid with { HeaderSize = 0xffff, L1TableOffset = 0xffff0000UL };
        HeaderValidator.Validate(header, 1L << 40);
    }

    // ---- 10. backing file name offset ----

    [Theory]
    [InlineData(0xfff0u, 0x20u)] // runs past the 64 KiB header cluster
    [InlineData(0x10000u, 1u)] // starts right after it
    [InlineData(0xffffffffu, 1u)] // the sum is done in 64 bits: no wrap to 0
    [InlineData(64u, 0xffffffffu)]
    public void BackingNameOutsideHeaderArea(uint offset, uint size)
    {
        var header = s_valid with { Features = QedFeatures.BackingFile, BackingFilenameOffset = offset, BackingFilenameSize = size };
        Fails(header, ValidLength, "QED backing filename offset is invalid");
    }

    [Fact]
    public void BackingNameEndingExactlyAtTheHeaderEnd_IsFine()
    {
        var header = s_valid with { Features = QedFeatures.BackingFile, BackingFilenameOffset = 0x10000 - 12, BackingFilenameSize = 12 };
        HeaderValidator.Validate(header, ValidLength);
    }

    [Fact]
    public void BackingNameFields_AreIgnoredWithoutTheBackingBit()
    {
        var header = s_valid with { Features = QedFeatures.BackingFormatNoProbe, BackingFilenameOffset = 0xffffffff, BackingFilenameSize = 0xffffffff };
        HeaderValidator.Validate(header, ValidLength);
    }

    [Fact]
    public void BackingName_InASecondHeaderCluster_IsFine()
    {
        // Fixture F25: header_size 2, the name at 0x10064, the L1 at 0x20000.
        var header = s_valid with
        {
            HeaderSize = 2,
            Features = QedFeatures.BackingFile | QedFeatures.BackingFormatNoProbe,
            L1TableOffset = 0x20000,
            BackingFilenameOffset = 0x10064,
            BackingFilenameSize = 12,
        };
        HeaderValidator.Validate(header, 0x60000);
        Fails(header with { HeaderSize = 1, L1TableOffset = 0x10000 }, 0x60000, "QED backing filename offset is invalid");
    }

    [Fact]
    public void BackingOffset_ComesBeforeNameLength()
    {
        var header = s_valid with { Features = QedFeatures.BackingFile, BackingFilenameOffset = 0x10000, BackingFilenameSize = 5000 };
        Fails(header, ValidLength, "QED backing filename offset is invalid");
    }

    // ---- 11. backing file name length (QEMU's PATH_MAX buffer) ----

    [Theory]
    [InlineData(4096u)]
    [InlineData(10000u)]
    public void BackingNameOf4096BytesOrMore_CannotBeRead(uint size)
    {
        var header = s_valid with { Features = QedFeatures.BackingFile, BackingFilenameOffset = 64, BackingFilenameSize = size };
        var e = Fails(header, ValidLength, "Failed to read backing filename");
        Assert.Contains("backing_filename_size", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BackingNameOf4095Bytes_IsFine()
    {
        var header = s_valid with { Features = QedFeatures.BackingFile, BackingFilenameOffset = 64, BackingFilenameSize = 4095 };
        HeaderValidator.Validate(header, ValidLength);
    }

    // ---- what QEMU accepts (§2.1, last paragraph) ----

    [Fact]
    public void TableSize1_IsAccepted()
    {
        // QEMU 7.2 rejects every ts = 1 image ("QED table offset is invalid") because its overflow guard demands that
        // the last cluster of a table lie strictly after the first; the spec allows ts = 1 and so do we (§2.3, F06).
        var header = s_valid with { ClusterSize = 4096, TableSize = 1, L1TableOffset = 4096, ImageSize = 16 << 20 };
        Assert.Equal(new QedGeometry(4096, 1), HeaderValidator.Validate(header, 8192));
        Fails(header, 8192 - 512, "QED table offset is invalid");
    }

    [Theory]
    [InlineData(0x4ffff)]
    [InlineData(0x4fe01)]
    public void A_last_L1_cluster_short_by_less_than_a_sector_is_inside_the_file(long length)
    {
        // QEMU's block layer rounds a file's length up to whole sectors before QED rounds it down to a cluster (verified:
        // qemu-img check opens a default image truncated by one byte, and refuses it truncated by 512).
        Assert.Equal(new QedGeometry(Cs, 4), HeaderValidator.Validate(s_valid, length));
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(2u)]
    public void HeaderSize0And2_AreAccepted(uint headerSize)
    {
        var header = s_valid with { HeaderSize = headerSize, L1TableOffset = 0x20000 };
        HeaderValidator.Validate(header, 0x60000);
    }

    [Fact]
    public void HeaderSize0_AllowsTheL1AtOffset0()
    {
        // Nothing is reserved for the header, so the rules no longer keep the L1 out of cluster 0.
        HeaderValidator.Validate(s_valid with { HeaderSize = 0, L1TableOffset = 0 }, ValidLength);
    }

    [Theory]
    [InlineData(0x01UL, 0u)] // backing bit with an empty name: no backing file
    [InlineData(0x04UL, 0u)] // NO_PROBE without a backing file: ignored
    [InlineData(0x02UL, 0u)] // NEED_CHECK
    [InlineData(0x07UL, 8u)]
    public void KnownFeatureCombinations_AreAccepted(ulong features, uint nameSize)
    {
        HeaderValidator.Validate(s_valid with { Features = (QedFeatures)features, BackingFilenameOffset = 64, BackingFilenameSize = nameSize }, ValidLength);
    }

    [Fact]
    public void UnknownCompatAndAutoclearBits_AreAccepted()
    {
        HeaderValidator.Validate(s_valid with { CompatFeatures = ulong.MaxValue, AutoclearFeatures = ulong.MaxValue }, ValidLength);
    }

    [Fact]
    public void GapBetweenHeaderAndL1_IsAccepted()
    {
        HeaderValidator.Validate(s_valid with { L1TableOffset = 0x30000 }, 0x70000);
    }

    [Fact]
    public void TrailingPartialCluster_IsIgnored()
    {
        // F24: 1 000 junk bytes after the last cluster.
        HeaderValidator.Validate(s_valid, ValidLength + 1000);
    }
}
