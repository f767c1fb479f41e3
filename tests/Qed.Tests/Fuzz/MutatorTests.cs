using Qed.Tests.Infrastructure;

namespace Qed.Tests.Fuzz;

/// <summary>The mutator itself never fails: an exception there used to kill a fuzz worker silently (a backing-name offset near <c>uint.MaxValue</c> plus the name's length wrapped around).</summary>
public class MutatorTests
{
    [Fact]
    public void Mutates_every_seed_image_without_throwing()
    {
        using var dir = new TempDirectory();
        var seeds = FuzzSeeds.Build(dir);
        Assert.Equal(6, seeds.Count);
        int mutants = 0;
        // The old per-case seeds (new Random(case)) include case 1577, the first that threw.
        for (int i = 0; i < 2000; i++)
        {
            foreach (var (_, seed) in seeds)
            {
                Assert.NotNull(Mutator.Mutate(seed, new Random(i)));
                mutants++;
            }
        }
        Assert.Equal(12_000, mutants);
    }
}
