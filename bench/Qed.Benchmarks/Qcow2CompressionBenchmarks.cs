using System.Text;
using BenchmarkDotNet.Attributes;
using Qed.Formats.Qcow2.Compression;

namespace Qed.Benchmarks;

/// <summary>
/// Compressing and inflating qcow2 clusters: 4 MiB of numbered text lines (QCOW2.md §16.1's text) in 64 KiB clusters.
/// MB/s = 4 / mean seconds.
/// </summary>
public class Qcow2CompressionBenchmarks
{
    private const int ClusterSize = 65536, Clusters = 64;

    private readonly byte[] _disk = new byte[ClusterSize * Clusters];
    private readonly byte[] _output = new byte[ClusterSize];
    private byte[][] _compressed = [];

    [Params("zlib", "zstd")]
    public string Compression { get; set; } = "zlib";

    private Qcow2CompressionType Type => Compression == "zstd" ? Qcow2CompressionType.Zstd : Qcow2CompressionType.Zlib;

    [GlobalSetup]
    public void Setup()
    {
        var text = new StringBuilder();
        for (int i = 0; text.Length < _disk.Length; i++)
        {
            text.Append(i.ToString("D7", System.Globalization.CultureInfo.InvariantCulture)).Append('\n');
        }
        Encoding.ASCII.GetBytes(text.ToString(0, _disk.Length)).CopyTo(_disk, 0);
        _compressed = new byte[Clusters][];
        for (int i = 0; i < Clusters; i++)
        {
            int length = Qcow2Compression.Compress(Type, _disk.AsSpan(i * ClusterSize, ClusterSize), _output);
            _compressed[i] = _output.AsSpan(0, length).ToArray();
        }
    }

    [Benchmark]
    public int Compress4MiB()
    {
        int total = 0;
        for (int i = 0; i < Clusters; i++)
        {
            total += Qcow2Compression.Compress(Type, _disk.AsSpan(i * ClusterSize, ClusterSize), _output);
        }
        return total;
    }

    [Benchmark]
    public int Decompress4MiB()
    {
        for (int i = 0; i < Clusters; i++)
        {
            Qcow2Compression.Decompress(Type, _compressed[i], _output);
        }
        return _output[0];
    }
}
