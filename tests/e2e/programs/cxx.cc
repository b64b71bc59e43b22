/*
 * cxx.cc - the C++ allocation paths: new/delete, new[]/delete[], a growing
 * std::vector, a heap-allocated std::string; one `new` is leaked.
 *
 * Truth (case "cxx"): the leak of one Widget (24 bytes) has its site at
 * LEAK:new in make_widget, not in operator new; the other allocations have
 * their sites on the SITE: lines, not in libstdc++ nor in the STL headers:
 * new int 4 bytes, new int[10] 40, the vector's 8 reallocations as it
 * doubles from 1 to 128 ints (4 + 8 + ... + 512 = 1020 bytes), one block
 * for the string and one when it grows. Every total equals Valgrind's for
 * the same run (libstdc++ allocates its exception-handling emergency pool
 * at start-up, never freed: that block is in both).
 */
#include <memory>
#include <string>
#include <vector>

struct Widget {
	int id;
	char name[20];
};

static Widget *make_widget(int id)
{
	return new Widget{id, "widget"}; /* LEAK:new */
}

int main()
{
	int *one = new int(42); /* SITE:new */
	delete one;

	int *many = new int[10](); /* SITE:new[] */
	delete[] many;

	std::vector<int> numbers;
	for (int i = 0; i < 100; i++)
		numbers.push_back(i); /* SITE:vector */

	std::string text(40, 's');	/* SITE:string */
	text += ", and then some more"; /* SITE:append */

	auto owned = std::make_unique<Widget>();
	owned->id = static_cast<int>(numbers.size() + text.size());

	Widget *lost = make_widget(owned->id);
	return lost->id == 0;
}
