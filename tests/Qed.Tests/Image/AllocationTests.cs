using Qed.Image;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.Image;

/// <summary>Runs alone: <see cref="GC.GetTotalAllocatedBytes"/> counts every thread of the process, so no other test may allocate meanwhile.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class AllocationCollection
{
    public const string Name = "allocation (runs alone)";
}

/// <summary>
/// Bytes the engine allocates per request in a steady state (cache warm, clusters allocated): reads and in-place writes
/// must not allocate per request, or a long bench's peak memory is all garbage (issue 8, "Memory like a C tool").
/// </summary>
/// <remarks>
/// The count is process-wide (<c>GC.GetTotalAllocatedBytes(true)</c>: the async paths finish on pool threads, which the
/// per-thread counter would miss), so the bounds are generous next to what is measured (printed): a few bytes per
/// request for reads and in-place writes, against hundreds before the pooled state machines.
/// </remarks>
[Collection(AllocationCollection.Name)]
public class AllocationTests(ITestOutputHelper output)
{
    private const int Requests = 20_000;
    private const int RequestSize = 4096;
    private const long ImageSize = 64L * 1024 * 1024;

    /// <summary>Sync and async reads and in-place writes, each measured over <see cref="Requests"/> requests after a warm-up.</summary>
    [Theory]
    [InlineData("read", false, 16)]
    [InlineData("read", true, 64)]
    [InlineData("overwrite", false, 16)]
    [InlineData("overwrite", true, 64)]
    public async Task SteadyState_AllocatesAlmostNothingPerRequest(string kind, bool useAsync, int boundBytes)
    {
        using var dir = new TempDirectory();
        string path = dir.File("alloc.qed");
        Img.Create(path, ImageSize);
        await using var image = await Img.Open(path, useAsync);
        byte[] buffer = Img.Fill(RequestSize, 0x5a);
        long span = ImageSize / RequestSize;
        // Allocates every cluster the loop touches and loads its tables, so the measured loop runs the steady path.
        for (long i = 0; i < span; i += 16)
        {
            image.Write(buffer, i * RequestSize);
        }

        async Task RunAsync(int count)
        {
            for (int i = 0; i < count; i++)
            {
                long offset = i % span * RequestSize;
                if (kind == "read")
                {
                    if (useAsync)
                    {
                        await image.ReadAsync(buffer, offset);
                    }
                    else
                    {
                        image.Read(buffer, offset);
                    }
                }
                else if (useAsync)
                {
                    await image.WriteAsync(buffer, offset);
                }
                else
                {
                    image.Write(buffer, offset);
                }
            }
        }

        await RunAsync(Requests / 4);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        await RunAsync(Requests);
        long after = GC.GetTotalAllocatedBytes(precise: true);
        double perRequest = (after - before) / (double)Requests;
        output.WriteLine($"{kind} (useAsync: {useAsync}): {perRequest:F1} bytes allocated per request over {Requests} requests (bound {boundBytes})");
        Assert.True(perRequest <= boundBytes, $"{kind} (useAsync: {useAsync}) allocated {perRequest:F1} bytes per request, more than {boundBytes}");
    }

    /// <summary>Allocating writes at depth 16 (the bench's worst case): measured and bounded loosely, since contended gates and pool threads allocate.</summary>
    [Fact]
    public async Task AllocatingWrites_AtDepth16_StayBounded()
    {
        const int depth = 16;
        const int boundBytes = 400;
        using var dir = new TempDirectory();
        string path = dir.File("alloc.qed");
        long size = 1L << 30;
        Img.Create(path, size);
        await using var image = await Img.Open(path, useAsync: true);
        long span = size / RequestSize;
        long next = 0;

        async Task WorkerAsync(byte[] buffer, long limit)
        {
            while (true)
            {
                long request = Interlocked.Increment(ref next) - 1;
                if (request >= limit)
                {
                    return;
                }
                await image.WriteAsync(buffer, request % span * RequestSize);
            }
        }

        var buffers = Enumerable.Range(0, depth).Select(_ => Img.Fill(RequestSize, 0x5a)).ToArray();
        async Task RunAsync(long limit) => await Task.WhenAll(buffers.Select(b => Task.Run(() => WorkerAsync(b, limit))));

        await RunAsync(Requests / 4);
        long before = GC.GetTotalAllocatedBytes(precise: true);
        await RunAsync(Requests / 4 + Requests);
        long after = GC.GetTotalAllocatedBytes(precise: true);
        double perRequest = (after - before) / (double)Requests;
        output.WriteLine($"allocating writes at depth {depth}: {perRequest:F1} bytes allocated per request over {Requests} requests (bound {boundBytes})");
        Assert.True(perRequest <= boundBytes, $"allocating writes allocated {perRequest:F1} bytes per request, more than {boundBytes}");
    }
}
