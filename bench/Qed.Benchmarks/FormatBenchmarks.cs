using BenchmarkDotNet.Attributes;
using Qed.Format;
using Qed.Tables;

namespace Qed.Benchmarks;

/// <summary>Header parsing, cluster mapping arithmetic and table decoding.</summary>
public class FormatBenchmarks
{
    private readonly byte[] _header = new byte[64];
    private readonly byte[] _table = new byte[256 * 1024];
    private readonly QedGeometry _geometry = QedGeometry.Default;

    [GlobalSetup]
    public void Setup()
    {
        new QedHeader { Magic = 0x00444551, ClusterSize = 65536, TableSize = 4, HeaderSize = 1, L1TableOffset = 65536, ImageSize = 1 << 30 }.WriteTo(_header);
        var random = new Random(1);
        for (int i = 0; i < _table.Length / 8; i++)
        {
            TableEntry.Write(_table, i, (ulong)random.Next(1, 1 << 20) << 16);
        }
    }

    [Benchmark]
    public ulong ParseHeader() => QedHeader.Parse(_header).ImageSize;

    [Benchmark]
    public long MapClusters()
    {
        long sum = 0;
        for (long offset = 0; offset < 1L << 32; offset += 1 << 20)
        {
            sum += _geometry.L1Index(offset) + _geometry.L2Index(offset) + _geometry.OffsetInCluster(offset);
        }
        return sum;
    }

    [Benchmark]
    public ulong DecodeTable()
    {
        ulong sum = 0;
        for (int i = 0; i < _table.Length / 8; i++)
        {
            sum += TableEntry.Read(_table, i);
        }
        return sum;
    }
}
