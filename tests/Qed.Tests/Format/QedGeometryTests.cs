using Qed.Format;

namespace Qed.Tests.Format;

public class QedGeometryTests
{
    private const long KiB = 1024;
    private const long MiB = 1024 * KiB;
    private const long GiB = 1024 * MiB;

    [Fact]
    public void Default_Is64KiBClustersAndTablesOf4()
    {
        var g = QedGeometry.Default;
        Assert.Equal(65536, g.ClusterSize);
        Assert.Equal(4, g.TableSize);
        Assert.Equal(16, g.ClusterBits);
        Assert.Equal(32768, g.TableEntries);
        Assert.Equal(15, g.IndexBits);
        Assert.Equal(256 * KiB, g.TableBytes);
        Assert.Equal(2 * GiB, g.L2Span);
        Assert.Equal(0xffffL, g.ClusterMask);
    }

    [Theory]
    [InlineData(4096, 1, 512, 2 * MiB)]
    [InlineData(4096, 2, 1024, 4 * MiB)]
    [InlineData(16384, 2, 4096, 64 * MiB)]
    [InlineData(1 << 20, 16, 2 * 1024 * 1024, 2L * 1024 * 1024 * 1024 * 1024)]
    public void TableEntriesAndL2Span(int cs, int ts, int entries, long span)
    {
        var g = new QedGeometry(cs, ts);
        Assert.Equal(entries, g.TableEntries);
        Assert.Equal(span, g.L2Span);
        Assert.Equal(1 << g.IndexBits, g.TableEntries);
        Assert.Equal(1 << g.ClusterBits, g.ClusterSize);
    }

    [Fact]
    public void Indices_Default()
    {
        var g = QedGeometry.Default;
        Assert.Equal(0, g.L1Index(0));
        Assert.Equal(0, g.L2Index(0));
        Assert.Equal(0, g.L1Index(2 * GiB - 1));
        Assert.Equal(32767, g.L2Index(2 * GiB - 1));
        Assert.Equal(65535, g.OffsetInCluster(2 * GiB - 1));
        Assert.Equal(1, g.L1Index(2 * GiB));
        Assert.Equal(0, g.L2Index(2 * GiB));
        Assert.Equal(1, g.L2Index(64 * KiB));
        Assert.Equal(16, g.L2Index(MiB));
        Assert.Equal(4096, g.OffsetInCluster(68 * KiB));
        // The last byte of the largest image: L1 index N-1, L2 index N-1.
        long last = g.MaxImageSize - 1;
        Assert.Equal(32767, g.L1Index(last));
        Assert.Equal(32767, g.L2Index(last));
    }

    [Fact]
    public void Indices_SmallGeometry()
    {
        var g = new QedGeometry(4096, 2); // N = 1024, one L2 maps 4 MiB
        Assert.Equal(1, g.L1Index(4 * MiB));
        Assert.Equal(0, g.L2Index(4 * MiB));
        Assert.Equal(1023, g.L2Index(4 * MiB - 1));
        Assert.Equal(3, g.L1Index(12 * MiB + 5));
        Assert.Equal(5, g.OffsetInCluster(12 * MiB + 5));
    }

    [Fact]
    public void AlignDownAndUp()
    {
        var g = new QedGeometry(4096, 1);
        Assert.Equal(0, g.AlignDown(4095));
        Assert.Equal(4096, g.AlignDown(4096));
        Assert.Equal(0, g.AlignUp(0));
        Assert.Equal(4096, g.AlignUp(1));
        Assert.Equal(4096, g.AlignUp(4096));
        Assert.Equal(8192, g.AlignUp(4097));
    }

    [Theory]
    [InlineData(4096)]
    [InlineData(8192)]
    [InlineData(32768)]
    [InlineData(65536)]
    [InlineData(1 << 26)]
    public void ClustersFor_IsExactCeiling(int cs)
    {
        var g = new QedGeometry(cs, 1);
        Assert.Equal(0, g.ClustersFor(0));
        Assert.Equal(1, g.ClustersFor(1));
        Assert.Equal(1, g.ClustersFor(cs - 1));
        Assert.Equal(1, g.ClustersFor(cs));
        Assert.Equal(2, g.ClustersFor(cs + 1));
        // The runs where QEMU's division by cs - 1 (QED-FORMAT.md §5.3) gives one too many.
        Assert.Equal(cs - 2, g.ClustersFor((long)(cs - 2) * cs));
        Assert.Equal(cs - 1, g.ClustersFor((long)(cs - 1) * cs));
        Assert.Equal(cs - 1, g.ClustersFor((long)(cs - 1) * cs - 1));
        Assert.Equal(cs, g.ClustersFor((long)cs * cs));
        Assert.Equal(cs + 1, g.ClustersFor((long)cs * cs + 1));
        Assert.Equal(2L * cs, g.ClustersFor(2L * cs * cs));
    }

    [Fact]
    public void ClustersFor_TheF28Write_Is4096Clusters()
    {
        // F28: one 16 MiB write with 4 KiB clusters; QEMU reserves 4 097 clusters, the correct count is 4 096.
        var g = new QedGeometry(4096, 16);
        Assert.Equal(4096, g.ClustersFor(16 * MiB));
        Assert.Equal(4096, g.ClustersFor(16 * MiB - 4095));
        Assert.Equal(4097, g.ClustersFor(16 * MiB + 1));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3000)]
    [InlineData(2048)]
    [InlineData(4095)]
    [InlineData(4097)]
    [InlineData(12288)]
    [InlineData(1 << 27)]
    [InlineData(-4096)]
    public void InvalidClusterSize_IsRejected(int cs)
    {
        Assert.False(QedGeometry.IsValidClusterSize(cs));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new QedGeometry(cs, 4));
        Assert.Equal("clusterSize", e.ParamName);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    [InlineData(5)]
    [InlineData(32)]
    [InlineData(-1)]
    public void InvalidTableSize_IsRejected(int ts)
    {
        Assert.False(QedGeometry.IsValidTableSize(ts));
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new QedGeometry(65536, ts));
        Assert.Equal("tableSize", e.ParamName);
    }

    [Fact]
    public void ValidSizes_AreEveryPowerOfTwoInRange()
    {
        for (int bits = 12; bits <= 26; bits++)
        {
            Assert.True(QedGeometry.IsValidClusterSize(1L << bits));
        }
        foreach (int ts in new[] { 1, 2, 4, 8, 16 })
        {
            Assert.True(QedGeometry.IsValidTableSize(ts));
        }
        Assert.False(QedGeometry.IsValidClusterSize(uint.MaxValue));
        Assert.False(QedGeometry.IsValidTableSize(uint.MaxValue));
        Assert.False(QedGeometry.IsValidClusterSize(1L << 32));
    }

    /// <summary>The table of QED-FORMAT.md §2.2, copied as text: rows are cluster sizes 4 KiB..64 MiB, columns table sizes 1, 2, 4, 8, 16.</summary>
    private static readonly string[] s_qemuMaxTable =
    [
        "4 KiB | 1 GiB | 4 GiB | 16 GiB | 64 GiB | 256 GiB",
        "8 KiB | 8 GiB | 32 GiB | 128 GiB | 512 GiB | 2 TiB",
        "16 KiB | 64 GiB | 256 GiB | 1 TiB | 4 TiB | 16 TiB",
        "32 KiB | 512 GiB | 2 TiB | 8 TiB | 32 TiB | 128 TiB",
        "64 KiB | 4 TiB | 16 TiB | 64 TiB | 256 TiB | 1 PiB",
        "128 KiB | 32 TiB | 128 TiB | 512 TiB | 2 PiB | 8 PiB",
        "256 KiB | 256 TiB | 1 PiB | 4 PiB | 16 PiB | 64 PiB",
        "512 KiB | 2 PiB | 8 PiB | 32 PiB | 128 PiB | 512 PiB",
        "1 MiB | 16 PiB | 64 PiB | 256 PiB | 1 EiB | 4 EiB",
        "2 MiB | 128 PiB | 512 PiB | 2 EiB | 8 EiB | 0",
        "4 MiB | 1 EiB | 4 EiB | 0 | 0 | 0",
        "8 MiB | 8 EiB | 0 | 0 | 0 | 0",
        "16 MiB | 0 | 0 | 0 | 0 | 0",
        "32 MiB | 0 | 0 | 0 | 0 | 0",
        "64 MiB | 0 | 0 | 0 | 0 | 0",
    ];

    private static ulong ParseSize(string text)
    {
        string[] parts = text.Trim().Split(' ');
        if (parts.Length == 1)
        {
            return ulong.Parse(parts[0]);
        }
        int shift = parts[1] switch { "KiB" => 10, "MiB" => 20, "GiB" => 30, "TiB" => 40, "PiB" => 50, "EiB" => 60, _ => throw new FormatException(text) };
        return ulong.Parse(parts[0]) << shift;
    }

    public static TheoryData<int, int, string> QemuMaxCases()
    {
        var data = new TheoryData<int, int, string>();
        int[] tableSizes = [1, 2, 4, 8, 16];
        foreach (string row in s_qemuMaxTable)
        {
            string[] cells = row.Split('|');
            int cs = (int)ParseSize(cells[0]);
            for (int i = 0; i < tableSizes.Length; i++)
            {
                data.Add(cs, tableSizes[i], cells[i + 1].Trim());
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(QemuMaxCases))]
    public void QemuMaxImageSize_MatchesTheSpecTable(int cs, int ts, string expected)
    {
        var g = new QedGeometry(cs, ts);
        Assert.Equal(ParseSize(expected), g.QemuMaxImageSize);
    }

    [Theory]
    [MemberData(nameof(QemuMaxCases))]
    public void MaxImageSize_IsTheTrueBoundCappedAtLongMax(int cs, int ts, string qemu)
    {
        var g = new QedGeometry(cs, ts);
        // The true bound N² · cs, computed here with BigInteger.
        var n = new System.Numerics.BigInteger(ts) * cs / 8;
        var exact = n * n * cs;
        long expected = exact > long.MaxValue ? long.MaxValue & ~511L : (long)exact;
        Assert.Equal(expected, g.MaxImageSize);
        Assert.Equal(0, g.MaxImageSize % 512);
        if (ParseSize(qemu) == 0)
        {
            // QEMU's product wrapped: the true bound reaches 2^64.
            Assert.True(exact >= System.Numerics.BigInteger.One << 64);
        }
        else if (exact <= long.MaxValue)
        {
            Assert.Equal(ParseSize(qemu), (ulong)g.MaxImageSize);
        }
    }

    [Fact]
    public void MaxImageSize_Default_Is64TiB()
    {
        Assert.Equal(64L << 40, QedGeometry.Default.MaxImageSize);
        Assert.Equal(64UL << 40, QedGeometry.Default.QemuMaxImageSize);
    }

    [Fact]
    public void MaxImageSize_8MiBClustersTs1_Is2Pow63_Capped()
    {
        var g = new QedGeometry(8 << 20, 1);
        Assert.Equal(1UL << 63, g.QemuMaxImageSize);
        Assert.Equal(long.MaxValue & ~511L, g.MaxImageSize);
    }

    [Fact]
    public void Geometry_IsAValue()
    {
        Assert.Equal(new QedGeometry(4096, 2), new QedGeometry(4096, 2));
        Assert.NotEqual(new QedGeometry(4096, 2), new QedGeometry(4096, 4));
    }
}
